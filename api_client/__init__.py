"""embedq's public contract and light client.

from api_client import EmbedQ
eq = EmbedQ.from_env()
vectors = eq.encode(["charged twice"], normalize=True).result(timeout=60)
scores = eq.similarity(["charged twice"], ["billed two times", "app crashes"]).result(timeout=60)
"""

import logging

from api_client.client import EmbedQ
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
from api_client.job import Job
from api_client.schemas import JobInfo
from api_client.states import JobKind, JobStatus

# A library logs; the application decides where to (nothing is printed unless it configures logging).
logging.getLogger(__name__).addHandler(logging.NullHandler())

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
