"""What a worker says about each job: one log line at its start and one at its end, and the job metrics.

``watching`` wraps one attempt of a job: it logs ``job <id> <kind> started``
with the queue, lane, attempt and items, and ``job <id> <kind> <status> in
<seconds>`` at the end; every line logged meanwhile (by any library) carries
the job's fields, so ``--log-format json`` (``JsonFormatter``) puts
``job_id``, ``kind``, ``queue``, ``lane``, ``items`` and ``seconds`` on each
line of a job. It counts the attempt in the Prometheus metrics
(``embedq.worker.metrics``) too.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from embedq.worker.metrics import lane_of, metrics

log = logging.getLogger("embedq.jobs")

JOB_FIELDS = ("job_id", "kind", "queue", "lane", "attempt", "items", "status", "seconds")
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("embedq_job", default=None)


@dataclass
class Watch:
    """One attempt of a job being run: the runner's code sets ``status`` and ``summary`` as it ends."""

    job_id: str
    kind: str
    queue: str
    attempt: int
    items: int
    status: str = "failed"
    summary: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def lane(self) -> str:
        return lane_of(self.queue)

    def fields(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "queue": self.queue,
            "lane": self.lane,
            "attempt": self.attempt,
            "items": self.items,
        }


@contextmanager
def watching(*, job_id: str, kind: str, queue: str, attempt: int, items: int) -> Iterator[Watch]:
    """Log, count and time one attempt of a job (see the module docstring)."""
    watch = Watch(job_id, kind, queue, attempt, items)
    token = _current.set(watch.fields())
    found = metrics()
    if found is not None:
        found.in_flight.labels(kind, watch.lane).inc()
    log.info("job %s %s started: queue %s, attempt %d, %d items", job_id, kind, queue, attempt, items)
    try:
        yield watch
    finally:
        seconds = time.monotonic() - watch.started
        if found is not None:
            found.in_flight.labels(kind, watch.lane).dec()
            found.job_ended(kind, watch.lane, watch.status, seconds, watch.summary)
        level = logging.WARNING if watch.status == "failed" else logging.INFO
        log.log(
            level,
            "job %s %s %s in %.3fs: queue %s, %d items",
            job_id,
            kind,
            watch.status,
            seconds,
            queue,
            items,
            extra={"status": watch.status, "seconds": round(seconds, 4)},
        )
        _current.reset(token)


def refused(kind: str, queue: str) -> None:
    """Count a message refused before it became a runnable job (a bad inline request)."""
    found = metrics()
    if found is not None:
        found.jobs.labels(kind, "refused", lane_of(queue)).inc()


class JobFields(logging.Filter):
    """Puts the fields of the job the thread is running on every record logged meanwhile."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current.get()
        if current is not None:
            for key, value in current.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, process, and the job's fields when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
            "pid": record.process,
        }
        for key in JOB_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
