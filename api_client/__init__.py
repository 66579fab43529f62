"""embedq's public contract and light client.

from api_client import EmbedQ
eq = EmbedQ.from_env()
vectors = eq.encode(["charged twice"], normalize=True).result(timeout=60)
"""

from api_client.client import EmbedQ, Job
from api_client.errors import (
    BadRequest,
    EmbedQError,
    JobCancelled,
    JobNotFound,
    JobTimeout,
    LimitExceeded,
    PermanentError,
    RetriableError,
    UnknownModel,
)
from api_client.schemas import JobInfo
from api_client.states import JobStatus

__all__ = [
    "BadRequest",
    "EmbedQ",
    "EmbedQError",
    "Job",
    "JobCancelled",
    "JobInfo",
    "JobNotFound",
    "JobStatus",
    "JobTimeout",
    "LimitExceeded",
    "PermanentError",
    "RetriableError",
    "UnknownModel",
]
