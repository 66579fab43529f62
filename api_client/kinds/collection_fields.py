"""The typed fields of the collection requests: documents and their ids, index parameters, search filters.

Each is an ``Annotated`` type whose validators read the limits from the
validation context and raise ``BadRequest`` naming the field, the item and
the key (``documents[3].id``, ``ids[0]``, ``params.nprobe``, ``filter.team``).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from api_client.errors import BadRequest, LimitExceeded
from api_client.requests import check_texts, context_of, text_problem

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]
INDEX_KINDS: tuple[IndexKind, ...] = get_args(IndexKind)
INDEX_PARAMS: tuple[str, ...] = ("M", "efConstruction", "efSearch", "nlist", "nprobe")
"""FAISS parameters a build may set instead of the defaults: ``M``, ``efConstruction``, ``efSearch`` (hnsw),
``nlist``, ``nprobe`` (ivf)."""
Include = Literal["text", "metadata"]
INCLUDE: tuple[Include, ...] = get_args(Include)
MAX_ID_CHARS = 512
MAX_METADATA_CHARS = 16_384
"""Characters of one document's metadata as JSON."""
MAX_METADATA_DEPTH = 8
"""Levels of nested objects and lists in one document's metadata."""
MAX_FILTER_KEYS = 32
MAX_FILTER_CHARS = 1024
"""Characters of a filter's key, and of a string value it compares."""
INDEX_PARAM_MAX: dict[str, int] = {
    "M": 128,
    "efConstruction": 2048,
    "efSearch": 4096,
    "nlist": 65_536,
    "nprobe": 65_536,
}
"""The largest value of each FAISS parameter a request may set: beyond them a build's memory or a search's time
grows without a gain in recall worth it."""
DOCUMENT_SHAPE = "expected an object with 'id', 'text' and optional 'metadata'"


# ---------------------------------------------------------------- documents and ids


def _document_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError(
            "document_id", "expected a non-empty string id, got {got}", {"got": ascii(value)[:80]}
        )
    if len(value) > MAX_ID_CHARS or "\x00" in value:
        raise PydanticCustomError("document_id", f"ids are at most {MAX_ID_CHARS} characters, without NUL")
    problem = text_problem(value)
    if problem:
        raise PydanticCustomError("document_id", "the id {problem}", {"problem": problem})
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _json_object(value: Any) -> Any:
    """A metadata object (``None`` is none) that ``jsonb`` stores as it is: no NaN, no NUL, valid Unicode, at most
    ``MAX_METADATA_CHARS`` characters as JSON and ``MAX_METADATA_DEPTH`` levels deep."""
    if value is None:
        return {}
    if isinstance(value, dict):
        try:
            stored = json.dumps(value, allow_nan=False, ensure_ascii=False)
            stored.encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            if len(stored) > MAX_METADATA_CHARS:
                raise PydanticCustomError(
                    "metadata_size",
                    "{size} characters as JSON is over the limit of {limit} per document's metadata",
                    {"size": f"{len(stored):,}", "limit": f"{MAX_METADATA_CHARS:,}"},
                )
            if _depth(value) > MAX_METADATA_DEPTH:
                raise PydanticCustomError(
                    "metadata_depth", "nested deeper than {limit} levels", {"limit": MAX_METADATA_DEPTH}
                )
            if "\\u0000" not in stored:
                return value
    raise PydanticCustomError("json_object", "expected a JSON object (of finite numbers and text without NUL)")


DocumentId = Annotated[str, BeforeValidator(_document_id)]
"""A document's id: a non-blank string of at most ``MAX_ID_CHARS`` characters that can be stored."""
Metadata = Annotated[dict[str, Any], BeforeValidator(_json_object)]


class Document(BaseModel):
    """One document of an upsert."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: DocumentId
    text: str
    """Checked with the other texts of the upsert (``check_texts``), as ``documents.text[i]``."""
    metadata: Metadata = Field(default_factory=dict)


def _document_problem(error: ErrorDetails) -> tuple[str, str]:
    """Where in ``documents`` pydantic found ``error`` (``documents[i].id``...), and what."""
    index, *rest = error["loc"]
    where = f"documents[{index}]"
    if not rest or error["type"] in ("missing", "extra_forbidden"):
        return where, DOCUMENT_SHAPE
    if rest[0] == "text":
        return f"documents.text[{index}]", f"expected a string, got {type(error['input']).__name__}"
    return f"{where}.{rest[0]}", error["msg"]


def _list_of(value: Any, info: ValidationInfo, what: str) -> list[Any]:
    """``value`` as a non-empty list within ``max_texts_per_job``, before its items are validated."""
    field = info.field_name or what
    if not isinstance(value, list | tuple) or not value:
        raise BadRequest(f"{field}: expected a non-empty list of {what}", detail={"field": field})
    limit = context_of(info).limits.max_texts_per_job
    if len(value) > limit:
        raise LimitExceeded(
            f"{field}: {len(value):,} is over the limit of {limit:,} per job (max_texts_per_job)",
            detail={"field": field, "limit": "max_texts_per_job", "max": limit, "actual": len(value)},
        )
    return list(value)


def _documents(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> list[Document]:
    try:
        documents: list[Document] = handler(_list_of(value, info, "{id, text, metadata}"))
    except ValidationError as exc:
        error = exc.errors()[0]
        where, problem = _document_problem(error)
        raise BadRequest(f"{where}: {problem}", detail={"field": "documents", "index": error["loc"][0]}) from exc
    seen: dict[str, int] = {}
    for index, document in enumerate(documents):
        if document.id in seen:
            raise BadRequest(
                f"documents[{index}].id: {document.id!r} is also documents[{seen[document.id]}]; "
                "ids must be unique in one upsert",
                detail={"field": "documents", "index": index},
            )
        seen[document.id] = index
    check_texts([document.text for document in documents], context_of(info).limits, "documents.text")
    return documents


def _ids(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> list[str]:
    try:
        return handler(_list_of(value, info, "ids"))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = f"ids[{error['loc'][0]}]"
        raise BadRequest(f"{where}: {error['msg']}", detail={"field": where}) from exc


Documents = Annotated[list[Document], WrapValidator(_documents)]
Ids = Annotated[list[DocumentId], WrapValidator(_ids)]


# ---------------------------------------------------------------- index parameters and filters


def _index_params(params: dict[str, int]) -> dict[str, int]:
    for key, value in params.items():
        if key not in INDEX_PARAMS or value < 1:
            raise BadRequest(
                f"params.{key}: index parameters are positive integers among {', '.join(INDEX_PARAMS)}",
                detail={"field": f"params.{key}"},
            )
        if value > INDEX_PARAM_MAX[key]:
            raise LimitExceeded(
                f"params.{key}: {value:,} is over the limit of {INDEX_PARAM_MAX[key]:,}",
                detail={"field": f"params.{key}", "limit": key, "max": INDEX_PARAM_MAX[key], "actual": value},
            )
    return params


def _filter(where: dict[str, Any]) -> dict[str, Any]:
    if len(where) > MAX_FILTER_KEYS:
        raise LimitExceeded(
            f"filter: {len(where)} keys is over the limit of {MAX_FILTER_KEYS}",
            detail={"field": "filter", "limit": "filter_keys", "max": MAX_FILTER_KEYS, "actual": len(where)},
        )
    for key, value in where.items():
        if len(key) > MAX_FILTER_CHARS or (isinstance(value, str) and len(value) > MAX_FILTER_CHARS):
            raise LimitExceeded(
                f"filter.{key[:40]!a}: keys and string values are at most {MAX_FILTER_CHARS} characters",
                detail={"field": "filter", "limit": "filter_chars", "max": MAX_FILTER_CHARS},
            )
        finite = not isinstance(value, float) or math.isfinite(value)
        if not isinstance(value, str | int | float | bool) or not finite:
            raise BadRequest(
                f"filter.{key}: filters are equality on metadata keys; the value must be a string, number or "
                f"boolean, got {type(value).__name__}",
                detail={"field": f"filter.{key}"},
            )
        problem = text_problem(key) or (text_problem(value) if isinstance(value, str) else None)
        if problem:
            raise BadRequest(f"filter.{key}: {problem}", detail={"field": f"filter.{key}"})
    return where


IndexParams = Annotated[dict[str, int], AfterValidator(_index_params)]
Filter = Annotated[dict[str, Any], AfterValidator(_filter)]
