"""Task wrappers: thin adapters from a Celery message to a job runner.

Each accepts any arguments, so no message, however malformed, can crash the
worker: ``worker.handling`` records what was wrong. Celery's retry count is
unbounded (``max_retries=None``): attempts are counted and capped in the
``jobs`` row, which survives redeliveries that Celery's counter does not.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from api_client.celery_conf import TASK_NAMES
from api_client.states import JobKind
from worker.app import app
from worker.encode_job import run_encode
from worker.handling import handle


@app.task(name=TASK_NAMES[JobKind.ENCODE], bind=True, ignore_result=True, max_retries=None)
def encode(self: Task, *args: Any, **kwargs: Any) -> None:
    """Encode texts: ``kwargs={"job_id": <uuid>}`` or ``kwargs={"request": {"texts": [...], ...}}``."""
    handle(self, JobKind.ENCODE, run_encode, args, kwargs)
