"""Request schemas of the collection jobs: upsert, delete, index build, search, reindex.

Every request names its collection; the worker checks the collection again
(it may have been dropped or reindexed since). Documents are
``{"id", "text", "metadata"}``: ids are unique within one upsert, texts pass
the same checks as encode texts, metadata is a JSON object. A search filter is
equality on metadata keys, each value a JSON scalar.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api_client.backends import Backend
from api_client.errors import BadRequest, LimitExceeded
from api_client.requests import check_name
from api_client.schemas import DEFAULT_MODEL, Limits, check_batch_size, check_model_name, check_texts, parse_options

INDEX_KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf")
INCLUDE: tuple[str, ...] = ("text", "metadata")
MAX_ID_CHARS = 512


def check_collection_name(name: Any) -> str:
    """A collection name (``check_name``)."""
    return check_name(name, "collection")


class _Options(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CollectionOptions(_Options):
    """A new collection: its model (one version, bound at the first upsert) and whether vectors are normalized."""

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=200)
    normalize: bool = True


class UpsertOptions(_Options):
    batch_size: int = Field(32, ge=1)
    backend: Backend | None = None
    """Used by the upsert that binds the collection to a model version; later ones must match that version's."""


class UpsertRequest(UpsertOptions):
    """Documents to add or replace, by id."""

    collection: str
    documents: list[dict[str, Any]]

    @property
    def texts(self) -> list[str]:
        return [doc["text"] for doc in self.documents]


class DeleteRequest(_Options):
    collection: str
    ids: list[str]


INDEX_PARAMS: tuple[str, ...] = ("M", "efConstruction", "efSearch", "nlist", "nprobe")


class BuildOptions(_Options):
    kind: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    params: dict[str, int] | None = None
    """FAISS parameters instead of the defaults: ``M``, ``efConstruction``, ``efSearch`` (hnsw), ``nlist``,
    ``nprobe`` (ivf)."""


class BuildRequest(BuildOptions):
    collection: str


class SearchOptions(_Options):
    k: int = Field(10, ge=1)
    filter: dict[str, Any] | None = None
    threshold: float | None = None
    include: list[Literal["text", "metadata"]] = ["text", "metadata"]
    batch_size: int = Field(32, ge=1)
    rerank: str | None = Field(None, min_length=1, max_length=200)
    """A registered cross-encoder that rescores the best ``rerank_top`` hits of each query."""
    rerank_top: int = Field(50, ge=1)


class SearchRequest(SearchOptions):
    """Queries against a collection's active index and its delta."""

    collection: str
    queries: list[str]


class ReindexOptions(_Options):
    model: str | None = Field(None, min_length=1, max_length=200)
    kind: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    params: dict[str, int] | None = None
    min_recall: float = Field(0.95, ge=0.0, le=1.0)
    batch_size: int = Field(32, ge=1)
    backend: Backend | None = None
    """What computes the new model version's vectors (``None``: the worker's setting)."""
    id_from: str | None = None
    """A chunk's first document id (set by the service when it splits a reindex)."""
    id_to: str | None = None
    """The first document id after a chunk's range (``None``: to the end)."""


class ReindexRequest(ReindexOptions):
    collection: str


def _split(raw: Any, *fields: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(raw, dict):
        raise BadRequest(f"request: expected a JSON object, got {type(raw).__name__}", detail={"field": "request"})
    for field in fields:
        if field not in raw:
            raise BadRequest(f"{field}: missing", detail={"field": field})
    return {k: raw[k] for k in fields}, {k: v for k, v in raw.items() if k not in fields}


def parse_collection_options(raw: Any) -> CollectionOptions:
    options = parse_options(raw if isinstance(raw, dict) else {}, CollectionOptions)
    return CollectionOptions.model_construct(model=check_model_name(options.model), normalize=options.normalize)


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}: expected a non-empty string id, got {ascii(value)[:80]}", detail={"field": where})
    if len(value) > MAX_ID_CHARS or "\x00" in value:
        raise BadRequest(f"{where}: ids are at most {MAX_ID_CHARS} characters, without NUL", detail={"field": where})
    return value


def _check_documents(documents: Any, limits: Limits) -> list[dict[str, Any]]:
    if not isinstance(documents, list | tuple) or not documents:
        raise BadRequest("documents: expected a non-empty list of {id, text, metadata}", detail={"field": "documents"})
    checked: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, doc in enumerate(documents):
        where = f"documents[{index}]"
        if not isinstance(doc, dict) or set(doc) - {"id", "text", "metadata"} or "id" not in doc or "text" not in doc:
            raise BadRequest(
                f"{where}: expected an object with 'id', 'text' and optional 'metadata'",
                detail={"field": "documents", "index": index},
            )
        doc_id = _check_id(doc["id"], f"{where}.id")
        if doc_id in seen:
            raise BadRequest(
                f"{where}.id: {doc_id!r} is also documents[{seen[doc_id]}]; ids must be unique in one upsert",
                detail={"field": "documents", "index": index},
            )
        seen[doc_id] = index
        metadata = doc.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise BadRequest(f"{where}.metadata: expected a JSON object", detail={"field": "documents", "index": index})
        checked.append({"id": doc_id, "text": doc["text"], "metadata": metadata})
    if len(checked) > limits.max_texts_per_job:
        raise LimitExceeded(
            f"documents: {len(checked):,} is over the limit of {limits.max_texts_per_job:,} per job "
            "(max_texts_per_job)",
            detail={"field": "documents", "limit": "max_texts_per_job", "max": limits.max_texts_per_job},
        )
    check_texts([doc["text"] for doc in checked], limits, "documents.text")
    return checked


def parse_upsert_request(raw: Any, limits: Limits) -> UpsertRequest:
    fields, rest = _split(raw, "collection", "documents")
    options = parse_options(rest, UpsertOptions)
    check_batch_size(options.batch_size, limits)
    return UpsertRequest.model_construct(
        collection=check_collection_name(fields["collection"]),
        documents=_check_documents(fields["documents"], limits),
        batch_size=options.batch_size,
        backend=options.backend,
    )


def parse_delete_request(raw: Any, limits: Limits) -> DeleteRequest:
    fields, rest = _split(raw, "collection", "ids")
    parse_options(rest, _Options)
    ids = fields["ids"]
    if not isinstance(ids, list | tuple) or not ids:
        raise BadRequest("ids: expected a non-empty list of ids", detail={"field": "ids"})
    if len(ids) > limits.max_texts_per_job:
        raise LimitExceeded(f"ids: over the limit of {limits.max_texts_per_job:,}", detail={"field": "ids"})
    checked = [_check_id(value, f"ids[{i}]") for i, value in enumerate(ids)]
    return DeleteRequest.model_construct(collection=check_collection_name(fields["collection"]), ids=checked)


def _check_params(params: dict[str, int] | None) -> dict[str, int] | None:
    for key, value in (params or {}).items():
        if key not in INDEX_PARAMS or value < 1:
            raise BadRequest(
                f"params.{key}: index parameters are positive integers among {', '.join(INDEX_PARAMS)}",
                detail={"field": f"params.{key}"},
            )
    return params


def parse_build_request(raw: Any, _limits: Limits) -> BuildRequest:
    fields, rest = _split(raw, "collection")
    options = parse_options(rest, BuildOptions)
    return BuildRequest.model_construct(
        collection=check_collection_name(fields["collection"]), kind=options.kind, params=_check_params(options.params)
    )


def _check_filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool) or (isinstance(item, float) and not math.isfinite(item)):
            raise BadRequest(
                f"filter.{key}: filters are equality on metadata keys; the value must be a string, number or "
                f"boolean, got {type(item).__name__}",
                detail={"field": f"filter.{key}"},
            )
    return value


def parse_search_request(raw: Any, limits: Limits) -> SearchRequest:
    fields, rest = _split(raw, "collection", "queries")
    options = parse_options(rest, SearchOptions)
    check_batch_size(options.batch_size, limits)
    queries = check_texts(fields["queries"], limits, "queries")
    if len(queries) > limits.max_queries:
        raise LimitExceeded(
            f"queries: {len(queries):,} is over the limit of {limits.max_queries:,} per search (max_queries)",
            detail={"field": "queries", "limit": "max_queries", "max": limits.max_queries},
        )
    if max(options.k, options.rerank_top if options.rerank else 0) > limits.max_k:
        raise LimitExceeded(
            f"k: {max(options.k, options.rerank_top)} is over the limit of {limits.max_k} (max_k)",
            detail={"field": "k", "limit": "max_k", "max": limits.max_k},
        )
    return SearchRequest.model_construct(
        collection=check_collection_name(fields["collection"]),
        queries=queries,
        k=options.k,
        filter=_check_filter(options.filter),
        threshold=options.threshold,
        include=list(dict.fromkeys(options.include)),
        batch_size=options.batch_size,
        rerank=check_model_name(options.rerank) if options.rerank is not None else None,
        rerank_top=max(options.rerank_top, options.k),
    )


def parse_reindex_request(raw: Any, limits: Limits) -> ReindexRequest:
    fields, rest = _split(raw, "collection")
    options = parse_options(rest, ReindexOptions)
    check_batch_size(options.batch_size, limits)
    return ReindexRequest.model_construct(
        collection=check_collection_name(fields["collection"]),
        model=check_model_name(options.model) if options.model is not None else None,
        kind=options.kind,
        params=_check_params(options.params),
        min_recall=options.min_recall,
        batch_size=options.batch_size,
        backend=options.backend,
        id_from=options.id_from,
        id_to=options.id_to,
    )
