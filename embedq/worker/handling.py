"""What every task does around its runner: accept the message, claim, run, finish or fail.

One ``handle`` serves every job kind: it takes the kind's declaration from
``api_client.kinds`` and its runner from ``embedq.worker.runners``, parses
the claimed job's request once, hands the runner the typed request, and
finishes the job with the runner's ``Outcome`` (``embedq.worker.finishing``),
the same way for every kind. The worker
survives every message: whatever a message holds, the task returns normally
(and the message is acked) unless a retriable error asks Celery to retry it
later. The returned outcome (the job's id, kind, status, summary and error,
never its vectors) is what Celery's result backend records for plain Celery
clients.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from typing import Any

from celery import Task, states
from celery.backends.base import DisabledBackend

from api_client import submit
from api_client.backoff import compute_backoff
from api_client.celery_conf import DEFAULT_QUEUE
from api_client.errors import (
    BadRequest,
    EmbedQError,
    PermanentError,
    RetriableError,
    TimeLimitExceeded,
    TimeLimitRetried,
    WrongKind,
)
from api_client.jsonsafe import json_safe
from api_client.kinds import KINDS, Kind
from api_client.requests import Context, Limits
from api_client.states import TERMINAL, JobKind, JobStatus
from api_client.store import jobs as jobs_read
from api_client.store.catalog import StoreCatalog
from api_client.store.jobs import Created
from embedq.worker.deadline import time_limits
from embedq.worker.errors import to_error
from embedq.worker.finishing import finish
from embedq.worker.layout import current
from embedq.worker.lease import JobStopped
from embedq.worker.observe import refused, watching
from embedq.worker.runners import RUNNERS
from embedq.worker.runtime import Runtime, runtime
from embedq.worker.store import jobs as jobs_store
from embedq.worker.store.jobs import Claim

log = logging.getLogger(__name__)


def _inline_job_id(task_id: str | None) -> str:
    """The job id for a message that carries its request inline: the Celery task id when it is a UUID."""
    if not task_id:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"embedq:celery-task:{task_id}"))


MAX_RECORDED = 100_000
"""Characters of a refused message kept in its failed row."""


def recordable(payload: Any) -> Any:
    """A refused message as storable JSON (see ``json_safe``), anything large cut to a prefix."""
    safe = json_safe(payload)
    text = json.dumps(safe, ensure_ascii=False)
    if len(text) > MAX_RECORDED:
        return {"truncated": text[:MAX_RECORDED], "length": len(text)}
    return safe


def accept(rt: Runtime, task: Task, spec: Kind, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, bool]:
    """``(job id, whether to claim it)`` for this message, creating the rows of inline requests.

    A message that carries no valid request gets a failed row saying why. An
    inline request large enough to be chunked becomes a parent and chunk
    jobs, whose messages are sent here; the parent itself is not claimed.
    """
    queue = (task.request.delivery_info or {}).get("routing_key") or DEFAULT_QUEUE
    job_id = kwargs.get("job_id") if not args and set(kwargs) == {"job_id"} else None
    if isinstance(job_id, str):
        try:
            return str(uuid.UUID(job_id)), True
        except ValueError:
            pass
    inline_id = _inline_job_id(task.request.id)
    try:
        if args or set(kwargs) != {"request"}:
            raise BadRequest(
                f"message: expected keyword arguments {{'job_id': <uuid>}} or {{'request': {{...}}}}, "
                f"got args={list(args)!r} kwargs={sorted(kwargs)!r}",
                detail={"field": "message"},
            )
        request = spec.parse(
            kwargs["request"], Context(Limits.of(rt.settings), catalog=StoreCatalog(lambda op: op(rt.conn)))
        )
    except PermanentError as error:
        log.warning("refused message %s: %s", task.request.id, error.message)
        refused(spec.name, queue)
        jobs_store.create_failed_job(
            conn=rt.conn,
            job_id=inline_id,
            kind=spec.name,
            queue=queue,
            request=recordable({"args": list(args), "kwargs": kwargs}),
            error=error,
        )
        return inline_id, False
    created = submit.record(
        conn=rt.conn, spec=spec, request=request, queue=queue, settings=rt.settings, job_id=inline_id
    )
    if created.info.chunks:
        submit.send(task.app, created)
        return inline_id, False
    return inline_id, True


def handle(task: Task, kind: JobKind, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict | None:
    """Accept, claim and run one message; map failures to fail, release-and-retry, or nothing.

    When the message carried its request inline (a plain Celery client's),
    its final outcome is stored in Celery's result backend and returned;
    otherwise, or while there is no final outcome yet, nothing is stored
    (the tasks ignore their return values) and it returns ``None``. Either
    way the task succeeds and its message is acked.
    """
    rt = runtime()
    spec = KINDS[kind]
    with rt.lock:
        try:
            job_id, claimable = accept(rt, task, spec, args, kwargs)
            claim = (
                jobs_store.claim_job(
                    conn=rt.conn,
                    job_id=job_id,
                    kind=kind,
                    worker=f"{task.request.hostname}/{os.getpid()}",
                    lease_seconds=rt.settings.lease_seconds,
                )
                if claimable
                else None
            )
        except WrongKind as refused:
            log.error("refused message %s: %s", task.request.id, refused.message)
            if task.request.id == refused.detail.get("job_id"):
                return None  # its record belongs to the job's own task
            return _record(
                task, {"job_id": refused.detail.get("job_id"), "status": "refused", "error": refused.to_record()}
            )
        except Exception as exc:
            _retry_message(task, to_error(exc), kwargs)
            return None
        if claim is not None:
            _run(task, rt, claim, spec)
            if claim.parent_id is not None:
                _after_chunk(task, rt, claim.parent_id)
        if not _inline(args, kwargs):
            # Our client and the sweeper send job ids and read PostgreSQL: no outcome to record for them.
            return None
        result = outcome(rt, job_id)
    if result is None or result["status"] not in TERMINAL:
        # Nothing final to record (a duplicate delivery, a parent whose chunks run, a retry to come):
        # Celery's result backend keeps the first final outcome it is given, so give it none yet.
        return None
    return _record(task, result)


def _record(task: Task, result: dict[str, Any]) -> dict[str, Any]:
    """Store a plain Celery client's final outcome in the result backend (tasks ignore their return values)."""
    if not isinstance(task.backend, DisabledBackend):
        try:
            task.backend.store_result(task.request.id, result, states.SUCCESS)
        except Exception as exc:  # the outcome is a courtesy; the job's row is the truth
            log.warning("could not record the outcome of message %s: %s", task.request.id, exc)
    return result


def _inline(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the message carries its request: a plain Celery client's, the one that reads outcomes."""
    return not args and set(kwargs) == {"request"}


def _after_chunk(task: Task, rt: Runtime, parent_id: str) -> None:
    """After a chunk: send its parent's message once it is ready to finalize; record a finished parent's outcome."""
    try:
        parent = jobs_read.get_job(conn=rt.conn, job_id=parent_id)
        if parent.status == JobStatus.QUEUED:  # every chunk succeeded and the parent finalizes itself
            submit.send(task.app, Created(parent, False, [(parent.id, parent.queue)]))
        elif parent.status.terminal and not isinstance(task.backend, DisabledBackend):
            task.backend.store_result(parent.id, outcome(rt, parent.id), states.SUCCESS)
    except Exception as exc:  # the sweeper sends a ready parent anyway; the outcome is a courtesy
        log.warning("after a chunk of job %s: %s", parent_id, exc)


def _queue(task: Task) -> str:
    """The queue the message came from."""
    return (task.request.delivery_info or {}).get("routing_key") or DEFAULT_QUEUE


def _inline_limits(task: Task) -> tuple[float | None, float | None]:
    """``(soft, hard)`` seconds to enforce ourselves: a solo pool's (Celery enforces prefork's), else none."""
    spec = current()
    pool = spec.pool if spec is not None else task.app.conf.worker_pool
    if pool != "solo":
        return None, None
    conf = task.app.conf
    return task.soft_time_limit or conf.task_soft_time_limit, task.time_limit or conf.task_time_limit


def _run(task: Task, rt: Runtime, claim: Claim, spec: Kind) -> None:
    """Parse the claimed job's request once, run its kind's runner, and finish it with the runner's outcome."""
    rt.current_progress = None
    rt.job_backends.clear()
    soft, hard = _inline_limits(task)
    try:
        with rt.keeper.holding(claim), time_limits(claim.job_id, soft, hard):
            context = Context(Limits.of(rt.settings), internal=claim.parent_id is not None)
            request = spec.parse(claim.request, context)
            with watching(
                job_id=claim.job_id,
                kind=spec.name,
                queue=_queue(task),
                attempt=claim.attempt,
                items=spec.size(request)[0],
            ) as watch:
                try:
                    outcome = RUNNERS[spec.name](rt, claim, request)
                    watch.summary = finish(rt, claim, spec, outcome) if outcome is not None else None
                    watch.status = "succeeded"
                except JobStopped as stopped:
                    watch.status = str(stopped.status)
                    raise
                except Exception as exc:
                    watch.status = "retried" if to_error(exc).retriable else "failed"
                    raise
    except JobStopped as stopped:
        log.info("job %s stopped: %s", claim.job_id, stopped.status)
    except Exception as exc:
        error = to_error(exc)
        progress = rt.current_progress
        if isinstance(error, TimeLimitExceeded) and progress is not None and progress.advanced:
            error = TimeLimitRetried(
                f"the task ran past its soft time limit after {progress.done:,} of {progress.total:,} items; "
                "retried, resuming from the cache"
            )
        _fail_or_release(task, rt, claim, error, exc)


def outcome(rt: Runtime, job_id: str) -> dict[str, Any] | None:
    """The job's id, kind, status, summary and error: what Celery's result backend records."""
    try:
        info = jobs_read.get_job(conn=rt.conn, job_id=job_id)
    except Exception as exc:  # the outcome is a courtesy to plain Celery clients; the row is the truth
        log.warning("job %s: could not read its outcome: %s", job_id, exc)
        return None
    return {
        "job_id": info.id,
        "kind": str(info.kind),
        "status": str(info.status),
        "progress": {"done": info.progress[0], "total": info.progress[1]},
        "chunks": info.chunks,
        "result": info.result,
        "error": info.error,
        "output": KINDS[info.kind].output,
    }


def _retry_message(task: Task, error: EmbedQError, kwargs: dict[str, Any]) -> None:
    """The message could not even be accepted (database down): retry it if that may help."""
    if not error.retriable:
        log.error("dropped message %s: %s", task.request.id, error.message)
        return
    log.warning("message %s: %s; retrying", task.request.id, error.message)
    raise task.retry(countdown=compute_backoff(task.request.retries + 1), kwargs=kwargs)


def _fail_or_release(task: Task, rt: Runtime, claim: Claim, error: EmbedQError, exc: BaseException) -> None:
    if isinstance(error, RetriableError) or not isinstance(exc, EmbedQError):
        log.warning(
            "job %s attempt %d: %s: %s",
            claim.job_id,
            claim.attempt,
            type(error).__name__,
            error.message,
            exc_info=not isinstance(exc, EmbedQError) and not isinstance(error, TimeLimitExceeded | TimeLimitRetried),
        )
    try:
        if rt.conn.info.transaction_status != 0:  # a statement broke mid-transaction
            rt.reset_connection()
        if not error.retriable:
            jobs_store.fail_job(conn=rt.conn, claim=claim, error=error)
            return
        released = jobs_store.release_job(conn=rt.conn, claim=claim, error=error)
    except Exception as db_exc:  # the database is gone too: the lease expires and the sweeper re-sends
        log.error("job %s: could not record %s (%s); leaving it to the sweeper", claim.job_id, error.message, db_exc)
        rt.reset_connection()
        return
    if released:
        raise task.retry(countdown=compute_backoff(claim.attempt), kwargs={"job_id": claim.job_id})
