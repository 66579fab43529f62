"""Task wrappers: one thin Celery task per job kind, declared from the kind registry.

Each accepts any arguments, so no message, however malformed, can crash the
worker: ``embedq.worker.handling`` records what was wrong. Celery's retry count is
unbounded (``max_retries=None``): attempts are counted and capped in the
``jobs`` row, which survives redeliveries that Celery's counter does not.
A kind's own time limits, when it declares them, replace the app's.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from api_client.kinds import KINDS, Kind
from embedq.worker.app import app
from embedq.worker.handling import handle


def _register(spec: Kind) -> Task:
    limits = {}
    if spec.time_limits is not None:
        limits = {"soft_time_limit": spec.time_limits[0], "time_limit": spec.time_limits[1]}

    def run(self: Task, *args: Any, **kwargs: Any) -> dict | None:
        return handle(self, spec.name, args, kwargs)

    run.__doc__ = f"Run a {spec.name} job: kwargs={{'job_id': <uuid>}} or kwargs={{'request': {{...}}}}."
    # ignore_result: ``handle`` stores the outcomes plain Celery clients read, and only those.
    return app.task(name=spec.task_name, bind=True, max_retries=None, ignore_result=True, **limits)(run)


TASKS: dict[str, Task] = {spec.task_name: _register(spec) for spec in KINDS.values()}
