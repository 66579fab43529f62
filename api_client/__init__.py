"""embedq's public contract and light client.

from api_client import EmbedQ
eq = EmbedQ.from_env()
vectors = eq.encode(["charged twice"], normalize=True).result(timeout=60)
scores = eq.similarity(["charged twice"], ["billed two times", "app crashes"]).result(timeout=60)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from api_client.errors import (
    BadRequest,
    DatabaseUnavailable,
    EmbedQError,
    JobCancelled,
    JobNotFound,
    JobTimeout,
    LimitExceeded,
    NotConfigured,
    PermanentError,
    RetriableError,
    UnknownModel,
)
from api_client.schemas import JobInfo
from api_client.states import JobKind, JobStatus

if TYPE_CHECKING:
    from api_client.client import EmbedQ
    from api_client.job import Job

# A library logs; the application decides where to (nothing is printed unless it configures logging).
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    """``EmbedQ`` and ``Job`` on first use: importing the contract (errors, schemas) loads no Celery or driver."""
    if name == "EmbedQ":
        from api_client.client import EmbedQ

        return EmbedQ
    if name == "Job":
        from api_client.job import Job

        return Job
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BadRequest",
    "DatabaseUnavailable",
    "EmbedQ",
    "EmbedQError",
    "Job",
    "JobCancelled",
    "JobInfo",
    "JobKind",
    "JobNotFound",
    "JobStatus",
    "JobTimeout",
    "LimitExceeded",
    "NotConfigured",
    "PermanentError",
    "RetriableError",
    "UnknownModel",
]
