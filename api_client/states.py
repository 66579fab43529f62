"""Job states, and the name of a job kind.

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


JobKind = str
"""What a job does: a kind's name (``encode``, ``search``, ...), a key of ``api_client.kinds.KINDS``."""


NOTIFY_CHANNEL = "embedq_jobs"
"""``NOTIFY`` channel: the payload is the id of a job that reached a terminal state."""
