"""Job states and job kinds.

``queued → running → succeeded | failed | cancelled``; ``running`` may fall
back to ``queued`` when a worker releases a job after a retriable error.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


OPEN = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class JobKind(StrEnum):
    """What a job does; ``api_client.kinds`` holds each kind's declaration."""

    ENCODE = "encode"
    SIMILARITY = "similarity"
    PARAPHRASES = "paraphrases"
    UPSERT = "upsert"
    DELETE = "delete"
    BUILD_INDEX = "build_index"
    SEARCH = "search"
    REINDEX = "reindex"
    TRAIN_CLASSIFIER = "train_classifier"
    CLASSIFY = "classify"
    TRIAGE = "triage"
    FINE_TUNE = "fine_tune"


NOTIFY_CHANNEL = "embedq_jobs"
"""``NOTIFY`` channel: the payload is the id of a job that reached a terminal state."""
