"""The base of every job request: a pydantic model validated with the limits and the catalog as context.

Each kind's request is a ``Request``: pydantic checks the types and the
constraints declared on its fields, and validators check the rest, reading
``Context`` from pydantic's validation context: the request limits, the
catalog of what exists (models, collections, classifiers; ``None`` checks
the request alone) and whether fields only the service may set are allowed.
``Request.parse`` is the one parser: the client runs it before a row or a
message exists, the worker's inline path runs it on a plain Celery message,
and ``handle`` runs it once more on every claimed job (never trust the
message).

Validators raise ``BadRequest`` (or a subclass, or ``UnknownModel``...) with
messages that name the field, the limit and the offending index; pydantic
lets those through unchanged, and its own errors become a ``BadRequest``
naming the first field it found wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo

from api_client.catalog import canonical_name
from api_client.errors import BadRequest, LimitExceeded
from api_client.jsonsafe import MAX_DEPTH, MAX_INT_BITS, unstorable_number


@dataclass(frozen=True)
class Limits:
    """Request limits; built from ``Settings`` by ``Limits.of``."""

    max_texts_per_job: int = 100_000
    max_chars_per_text: int = 50_000
    max_batch_size: int = 1024
    max_similarity_cells: int = 25_000_000
    max_pairs: int = 1_000_000
    max_queries: int = 1000
    max_k: int = 1000
    max_request_chars: int = 50_000_000
    """Characters in all the strings of one request (texts, documents, pairs, metadata, keys) together."""

    @classmethod
    def of(cls, settings: Any) -> Limits:
        return cls(
            settings.max_texts_per_job,
            settings.max_chars_per_text,
            settings.max_batch_size,
            settings.max_similarity_cells,
            settings.max_pairs,
            settings.max_queries,
            settings.max_k,
            settings.max_request_chars,
        )


class Catalog(Protocol):
    """What exists, for the checks a request's names need (the client's and the worker's own queries)."""

    def model(self, name: str) -> Any | None:
        """The ``models`` row ``name`` resolves to (``api_client.store.models.ModelRow``), ``None`` if none yet.

        Raises ``UnknownModel`` for a name that is neither bundled nor registered.
        """

    def cross_encoder(self, name: str) -> Any:
        """The registered cross-encoder ``name`` (``UnknownModel`` if there is none)."""

    def collection(self, name: str) -> Any:
        """The collection ``name`` (``UnknownCollection`` if there is none)."""

    def classifier(self, name: str, version: int | None = None) -> Any:
        """Version ``version`` of classifier ``name``, else its active one (``UnknownClassifier`` if none)."""


@dataclass(frozen=True)
class Context:
    """What a request is validated against."""

    limits: Limits = field(default_factory=Limits)
    catalog: Catalog | None = None
    """Existence checks of models, collections and classifiers; ``None``: the request's own checks only."""
    internal: bool = False
    """Whether fields only the service sets (a chunk's bounds) are allowed: on messages it sent itself."""


def context_of(info: ValidationInfo) -> Context:
    """The ``Context`` a validator runs under (a default one when none was given)."""
    return info.context if isinstance(info.context, Context) else Context()


def option_error(exc: ValidationError, request_model: type[BaseModel]) -> BadRequest:
    """The first problem pydantic found, as a ``BadRequest`` naming the field (and the allowed ones)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "request"
    where = where if where.isprintable() and where.isascii() else ascii(where)
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(request_model.model_fields))
        return BadRequest(f"{where}: unknown option (allowed: {allowed})", detail={"field": where})
    if first["type"] == "missing":
        return BadRequest(f"{where}: missing", detail={"field": where})
    got = ascii(first.get("input"))[:200]
    return BadRequest(f"{where}: {first['msg']} (got {got})", detail={"field": where})


def _number_problem(value: Any) -> str | None:
    if not unstorable_number(value):
        return None
    if isinstance(value, float):
        return f"{value} is not a JSON number; send finite numbers only"
    return f"an integer of {value.bit_length():,} bits is out of range (at most 2^{MAX_INT_BITS})"


def _path(path: tuple[Any, ...]) -> str:
    """``documents[3].metadata.score`` for ``("documents", 3, "metadata", "score")``."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    text = text or "request"
    return text if text.isprintable() and len(text) <= 200 else ascii(text)[:200]


def check_size(raw: Any, limits: Limits) -> None:
    """Refuse a request whose strings together exceed ``max_request_chars``, that nests deeper than
    ``MAX_DEPTH``, or that holds NaN, infinity or an integer past 64 bits, before any field is validated
    (walked without recursion, so no depth can exhaust the stack)."""
    total = 0
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(raw, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            total += len(value)
            continue
        problem = _number_problem(value)
        if problem:
            where = _path(path)
            raise BadRequest(f"{where}: {problem}", detail={"field": where})
        if not isinstance(value, dict | list | tuple):
            continue
        if depth > MAX_DEPTH:
            raise LimitExceeded(
                f"request: nested deeper than {MAX_DEPTH} levels of objects and lists",
                detail={"field": "request", "limit": "depth", "max": MAX_DEPTH},
            )
        if isinstance(value, dict):
            total += sum(len(key) for key in value if isinstance(key, str))
            stack.extend((item, depth + 1, (*path, key)) for key, item in value.items())
        else:
            stack.extend((item, depth + 1, (*path, index)) for index, item in enumerate(value))
        if total > limits.max_request_chars:
            break
    if total > limits.max_request_chars:
        raise LimitExceeded(
            f"request: over {limits.max_request_chars:,} characters in all (max_request_chars); "
            "split the input into several jobs",
            detail={"field": "request", "limit": "max_request_chars", "max": limits.max_request_chars},
        )


class Request(BaseModel):
    """A job request: strict types, no unknown fields, immutable once validated."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @classmethod
    def parse(cls, raw: Any, context: Context | Limits | None = None) -> Self:
        """Validate a raw (JSON-like) request; ``BadRequest`` (or a subclass) naming what is wrong."""
        if isinstance(context, Limits):
            context = Context(limits=context)
        if not isinstance(raw, dict):
            raise BadRequest(f"request: expected a JSON object, got {type(raw).__name__}", detail={"field": "request"})
        check_size(raw, (context or Context()).limits)
        try:
            return cls.model_validate(raw, context=context or Context())
        except ValidationError as exc:
            raise option_error(exc, cls) from exc


# ---------------------------------------------------------------- checks shared by the kinds


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored and hashed, if it cannot."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (a lone surrogate at character {exc.start})"
    return None


def check_texts(texts: Any, limits: Limits, where: str = "texts") -> list[str]:
    """Check the texts one by one; the error names the field and the first bad index."""
    if isinstance(texts, str) or not isinstance(texts, list | tuple):
        raise BadRequest(f"{where}: expected a list of strings, got {type(texts).__name__}", detail={"field": where})
    if not texts:
        raise BadRequest(f"{where}: the list is empty; send at least one text", detail={"field": where})
    if len(texts) > limits.max_texts_per_job:
        raise LimitExceeded(
            f"{where}: {len(texts):,} texts is over the limit of {limits.max_texts_per_job:,} per job "
            "(max_texts_per_job); split the input into several jobs",
            detail={
                "field": where,
                "limit": "max_texts_per_job",
                "max": limits.max_texts_per_job,
                "actual": len(texts),
            },
        )
    for index, text in enumerate(texts):
        check_text(text, limits, f"{where}[{index}]", detail={"field": where, "index": index})
    return list(texts)


def check_text(text: Any, limits: Limits, where: str, *, detail: dict[str, Any] | None = None) -> str:
    """One text: a non-blank string within ``max_chars_per_text`` that can be stored."""
    detail = detail or {"field": where}
    if not isinstance(text, str):
        raise BadRequest(f"{where}: expected a string, got {type(text).__name__}", detail=detail)
    if not text.strip():
        raise BadRequest(f"{where}: the text is empty or only whitespace", detail=detail)
    if len(text) > limits.max_chars_per_text:
        raise LimitExceeded(
            f"{where}: {len(text):,} characters is over the limit of {limits.max_chars_per_text:,} "
            "per text (max_chars_per_text)",
            detail={**detail, "limit": "max_chars_per_text", "max": limits.max_chars_per_text, "actual": len(text)},
        )
    problem = text_problem(text)
    if problem:
        raise BadRequest(f"{where}: the text {problem}", detail=detail)
    return text


SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""A name of a collection, classifier or fine-tuned model: also a folder name under the artifact root."""


def check_name(name: Any, field: str) -> str:
    """A name of ``field`` (a collection, classifier or model): a slug of lower-case letters, digits, ``-`` and
    ``_`` (at most 63 characters)."""
    if not isinstance(name, str) or not SLUG.match(name):
        raise BadRequest(
            f"{field}: {ascii(name)[:80]} is not a valid name: use 1 to 63 lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit",
            detail={"field": field},
        )
    return name


def _slug(value: Any, info: ValidationInfo) -> str:
    return check_name(value, info.field_name or "name")


def _texts(value: Any, info: ValidationInfo) -> list[str]:
    return check_texts(value, context_of(info).limits, info.field_name or "texts")


def _at_most(limit: str) -> Any:
    """A validator refusing an integer over the limit named ``limit`` (``LimitExceeded`` naming field and limit)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        maximum = getattr(context_of(info).limits, limit)
        field = info.field_name or "value"
        if isinstance(value, int) and not isinstance(value, bool) and value > maximum:
            raise LimitExceeded(
                f"{field}: {value} is over the limit of {maximum} ({limit})",
                detail={"field": field, "limit": limit, "max": maximum, "actual": value},
            )
        return value

    return check


MAX_IDEMPOTENCY_KEY = 200


def check_idempotency_key(key: Any) -> str | None:
    """An idempotency key: ``None``, or a non-blank string of at most 200 characters that can be stored."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest(
            f"idempotency_key: expected a non-blank string of at most {MAX_IDEMPOTENCY_KEY} characters, "
            f"got {type(key).__name__}" + (f" of {len(key):,} characters" if isinstance(key, str) else ""),
            detail={"field": "idempotency_key"},
        )
    problem = text_problem(key)
    if problem:
        raise BadRequest(f"idempotency_key: the key {problem}", detail={"field": "idempotency_key"})
    return key


def _model_name(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise BadRequest(f"model: {problem}", detail={"field": "model"})
    return canonical_name(value)


Texts = Annotated[list[str], BeforeValidator(_texts)]
"""A non-empty list of texts within the limits, each a non-blank storable string."""
BatchSize = Annotated[int, Field(ge=1), BeforeValidator(_at_most("max_batch_size"))]
TopK = Annotated[int, Field(ge=1), BeforeValidator(_at_most("max_k"))]
"""How many best matches to keep, at most ``max_k``."""
ModelName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_model_name)]
Slug = Annotated[str, BeforeValidator(_slug)]
"""A name that is a slug (``check_name``): the error names the field."""
"""A model name as jobs ask for it, in its canonical form."""
