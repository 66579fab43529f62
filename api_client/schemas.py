"""What every kind shares: the default model, a job's snapshot (``JobInfo``), and the request checks the
collection and classifier schemas call.

Each kind's request schema lives with its declaration in ``api_client.kinds``;
the checks shared by the kinds in ``api_client.requests``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from api_client.errors import BadRequest, LimitExceeded
from api_client.requests import Limits, check_texts, option_error, text_problem
from api_client.states import JobKind, JobStatus

__all__ = ["DEFAULT_MODEL", "JobInfo", "Limits", "check_texts"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
M = TypeVar("M", bound=BaseModel)


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
    from api_client.catalog import canonical_name

    problem = text_problem(model)
    if problem:
        raise BadRequest(f"model: {problem}", detail={"field": "model"})
    return canonical_name(model)


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
