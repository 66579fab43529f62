"""Recording a job and sending its messages: the one path for the client and for inline messages.

A job is a committed row before it is a message: ``record`` inserts it (as a
parent and chunk jobs when its kind chunks and it is large), then ``send``
publishes one message per job to run, carrying only the job id.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from pydantic import BaseModel

from api_client.kinds import KINDS, Kind
from api_client.settings import Settings
from api_client.store import jobs as jobs_store
from api_client.store.jobs import Created

log = logging.getLogger(__name__)


def record(
    *,
    conn: Any,
    spec: Kind,
    request: BaseModel,
    queue: str,
    settings: Settings,
    idempotency_key: str | None = None,
    job_id: str | None = None,
) -> Created:
    """Insert the job's row (or parent and chunk rows) in one transaction."""
    items, _ = spec.size(request)
    payload = request.model_dump()
    chunks = spec.split(conn, payload, settings.chunk_size) if spec.split is not None else None
    return jobs_store.create_job(
        conn=conn,
        kind=spec.name,
        queue=queue,
        request=payload,
        total=sum(chunk.total for chunk in chunks) if chunks else items,
        max_attempts=spec.max_attempts or settings.max_attempts,
        idempotency_key=idempotency_key,
        job_id=job_id,
        chunks=chunks,
        finalize=spec.finalize,
    )


def send(app: Celery, created: Created) -> None:
    """Publish a message per job to run; a failed send is left to the sweeper (the rows are committed)."""
    task_name = KINDS[created.info.kind].task_name
    for job_id, queue in created.messages:
        try:
            app.send_task(task_name, kwargs={"job_id": job_id}, queue=queue, task_id=job_id)
        except Exception as exc:
            log.warning("job %s is recorded but its message could not be sent (%s); it will be re-sent", job_id, exc)
            return
