"""Request schemas and their validation.

``parse_encode_request`` is the one gate for encode requests: the client runs
it before anything is queued and the worker runs it again on every message.
Errors name the field, the limit and the offending item index.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api_client.backends import Backend
from api_client.catalog import canonical_name
from api_client.errors import BadRequest, LimitExceeded
from api_client.states import JobKind, JobStatus

DEFAULT_MODEL = "all-MiniLM-L6-v2"
Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "uint8", "binary", "ubinary")
M = TypeVar("M", bound=BaseModel)


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
        )


class EncodeOptions(BaseModel):
    """The options of an encode job, as in ``SentenceTransformer.encode``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=200)
    normalize: bool = False
    batch_size: int = Field(32, ge=1)
    precision: Precision = "float32"
    truncate_dim: int | None = Field(None, ge=1)
    prompt_name: str | None = Field(None, min_length=1)
    prompt: str | None = Field(None, min_length=1)
    backend: Backend | None = None
    """What computes the vectors (``torch`` for exactly the library's floats); ``None``: the worker's setting."""


class EncodeRequest(EncodeOptions):
    """A validated encode request: the texts plus their options."""

    texts: list[str]


def option_error(exc: ValidationError, request_model: type[BaseModel]) -> BadRequest:
    """The first problem pydantic found, as a ``BadRequest`` naming the field (and the allowed ones)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "request"
    field = field if field.isprintable() and field.isascii() else ascii(field)
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(request_model.model_fields))
        return BadRequest(f"{field}: unknown option (allowed: {allowed})", detail={"field": field})
    got = ascii(first.get("input"))[:200]
    return BadRequest(f"{field}: {first['msg']} (got {got})", detail={"field": field})


def _text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored and hashed, if it cannot."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (a lone surrogate at character {exc.start})"
    return None


def check_texts(texts: Any, limits: Limits, field: str = "texts") -> list[str]:
    """Check the texts one by one; the error names the field and the first bad index."""
    if isinstance(texts, str) or not isinstance(texts, list | tuple):
        raise BadRequest(f"{field}: expected a list of strings, got {type(texts).__name__}", detail={"field": field})
    if not texts:
        raise BadRequest(f"{field}: the list is empty; send at least one text", detail={"field": field})
    if len(texts) > limits.max_texts_per_job:
        raise LimitExceeded(
            f"{field}: {len(texts):,} texts is over the limit of {limits.max_texts_per_job:,} per job "
            "(max_texts_per_job); split the input into several jobs",
            detail={
                "field": field,
                "limit": "max_texts_per_job",
                "max": limits.max_texts_per_job,
                "actual": len(texts),
            },
        )
    for index, text in enumerate(texts):
        _check_text(field, index, text, limits)
    return list(texts)


def _check_text(field: str, index: int, text: Any, limits: Limits) -> None:
    where = {"field": field, "index": index}
    if not isinstance(text, str):
        raise BadRequest(f"{field}[{index}]: expected a string, got {type(text).__name__}", detail=where)
    if not text.strip():
        raise BadRequest(f"{field}[{index}]: the text is empty or only whitespace", detail=where)
    if len(text) > limits.max_chars_per_text:
        raise LimitExceeded(
            f"{field}[{index}]: {len(text):,} characters is over the limit of {limits.max_chars_per_text:,} "
            "per text (max_chars_per_text)",
            detail={**where, "limit": "max_chars_per_text", "max": limits.max_chars_per_text, "actual": len(text)},
        )
    problem = _text_problem(text)
    if problem:
        raise BadRequest(f"{field}[{index}]: the text {problem}", detail=where)


def require_object(raw: Any, *fields: str) -> dict[str, Any]:
    """``raw`` as a dict holding ``fields``, or ``BadRequest`` naming what is wrong."""
    if not isinstance(raw, dict):
        raise BadRequest(f"request: expected a JSON object, got {type(raw).__name__}", detail={"field": "request"})
    for field in fields:
        if field not in raw:
            raise BadRequest(f"{field}: missing; send a list of strings", detail={"field": field})
    return raw


def parse_options(options: dict[str, Any], request_model: type[M]) -> M:
    """Validate the non-text fields of a request with its pydantic model."""
    try:
        return request_model.model_validate(options)
    except ValidationError as exc:
        raise option_error(exc, request_model) from exc


def check_batch_size(batch_size: int, limits: Limits) -> None:
    if batch_size > limits.max_batch_size:
        raise LimitExceeded(
            f"batch_size: {batch_size} is over the limit of {limits.max_batch_size} (max_batch_size)",
            detail={
                "field": "batch_size",
                "limit": "max_batch_size",
                "max": limits.max_batch_size,
                "actual": batch_size,
            },
        )


def check_model_name(model: str) -> str:
    """The canonical form of a model name that can be stored."""
    problem = _text_problem(model)
    if problem:
        raise BadRequest(f"model: {problem}", detail={"field": "model"})
    return canonical_name(model)


def parse_encode_request(raw: Any, limits: Limits) -> EncodeRequest:
    """Validate a raw (JSON-like) encode request; raise ``BadRequest`` on anything wrong."""
    raw = require_object(raw, "texts")
    texts = check_texts(raw["texts"], limits)
    parsed = parse_options({key: value for key, value in raw.items() if key != "texts"}, EncodeOptions)
    check_batch_size(parsed.batch_size, limits)
    for field in ("model", "prompt", "prompt_name"):
        problem = _text_problem(getattr(parsed, field) or "")
        if problem:
            raise BadRequest(f"{field}: {problem}", detail={"field": field})
    if parsed.prompt is not None and len(parsed.prompt) > limits.max_chars_per_text:
        raise LimitExceeded(
            f"prompt: {len(parsed.prompt):,} characters is over the limit of {limits.max_chars_per_text:,} "
            "(max_chars_per_text)",
            detail={"field": "prompt", "limit": "max_chars_per_text", "max": limits.max_chars_per_text},
        )
    if parsed.prompt is not None and parsed.prompt_name is not None:
        raise BadRequest("prompt, prompt_name: give one or the other, not both", detail={"field": "prompt"})
    fields = parsed.model_dump()
    fields["model"] = canonical_name(parsed.model)
    return EncodeRequest.model_construct(**fields, texts=texts)


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job row."""

    id: str
    kind: JobKind
    status: JobStatus
    queue: str
    progress: tuple[int, int]
    attempts: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    worker: str | None
    idempotency_key: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    parent_id: str | None = None
    chunks: int = 0
    """Chunk jobs of a parent (0 for a job that runs whole)."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601 strings)."""
        return {
            "id": self.id,
            "kind": str(self.kind),
            "status": str(self.status),
            "queue": self.queue,
            "progress": {"done": self.progress[0], "total": self.progress[1]},
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "worker": self.worker,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "parent_id": self.parent_id,
            "chunks": self.chunks,
        }
