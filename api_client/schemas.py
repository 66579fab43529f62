"""What every kind shares: the default model and a job's snapshot (``JobInfo``).

Each kind's request schema lives with its declaration in ``api_client.kinds``;
the checks shared by the kinds in ``api_client.requests``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from api_client.requests import Limits, check_texts
from api_client.states import JobKind, JobStatus

__all__ = ["DEFAULT_MODEL", "JobInfo", "Limits", "check_texts"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
M = TypeVar("M", bound=BaseModel)


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
