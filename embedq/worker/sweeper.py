"""The sweeper: re-sends jobs whose message was lost and fails jobs out of attempts.

Each job goes back to its own kind's task (``api_client.kinds``); parents of
chunk jobs are never sent (their chunks are).

Any number of workers run it; a session advisory lock lets one sweep at a
time. Each pass:

1. fails jobs out of attempts that no live lease holds (``AttemptsExhausted``,
   naming the last error);
2. re-sends running jobs whose lease expired, so another worker takes them
   over (at the first pass that sees them, then with a doubling backoff);
3. re-sends queued jobs last sent longer ago than ``resend_after`` (doubling
   per re-send), as many per queue as the broker is short: a queue holding
   fewer messages than it has queued jobs has lost some, so its oldest due
   jobs are sent again; a queue whose messages are all there is left alone.

A job whose queue no live worker consumes (its GPU worker went away) is
re-sent to a queue of the same lane that one does, and its row follows.
Database reads and marks are single statements; messages are published
outside any transaction, one job at a time, so a broker failure costs only
the jobs not yet sent, which the next pass picks up.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import psycopg
from celery import Celery

from api_client.celery_conf import PLAIN_QUEUE
from api_client.celery_conf import queue_depth as channel_queue_depth
from api_client.kinds import KINDS
from api_client.routing import QUEUES, target_queue
from api_client.settings import Settings
from api_client.store import workers as workers_store
from embedq.worker.store import jobs as jobs_store
from embedq.worker.store.jobs import Resend

log = logging.getLogger(__name__)

LOCK_KEY = 0x656D6271  # "embq"
PER_PASS = 500
"""Most jobs a pass re-sends from one group (lapsed jobs, or one queue's queued jobs)."""


@dataclass
class SweepReport:
    locked: bool = True
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    rerouted: list[str] = field(default_factory=list)
    skipped_backlog: list[str] = field(default_factory=list)


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` on the broker (0 when the queue does not exist yet)."""
    with app.connection_for_read() as connection:
        return channel_queue_depth(connection, queue)


def _send(app: Celery, conn: psycopg.Connection, job: Resend, consumed: set[str], report: SweepReport) -> str:
    """Send ``job`` again to its own kind's task, on its queue or the one that replaces it."""
    queue = target_queue(job.queue, consumed)
    app.send_task(KINDS[job.kind].task_name, kwargs={"job_id": job.job_id}, queue=queue, task_id=job.job_id)
    jobs_store.mark_sent(conn=conn, job_id=job.job_id, queue=queue)
    report.resent.append(job.job_id)
    if queue != job.queue:
        report.rerouted.append(job.job_id)
    return queue


def _pass(conn: psycopg.Connection, app: Celery, settings: Settings, report: SweepReport) -> None:
    report.failed = jobs_store.fail_exhausted(conn=conn)
    consumed = {q for row in workers_store.alive(conn=conn, within=settings.worker_alive) for q in row.queues}
    consumed &= {*QUEUES, PLAIN_QUEUE}
    # Messages this pass sends for lapsed jobs are on the broker too, but they are not for queued jobs.
    sent_now: Counter[str] = Counter()
    for job in jobs_store.lapsed_jobs(conn=conn, resend_after=settings.resend_after, limit=PER_PASS):
        sent_now[_send(app, conn, job, consumed, report)] += 1
    for queue, (queued, due) in jobs_store.stale_queues(conn=conn, resend_after=settings.resend_after).items():
        target = target_queue(queue, consumed)
        missing = due if target != queue else queued - (queue_depth(app, queue) - sent_now[queue])
        if missing <= 0:
            report.skipped_backlog.append(queue)
            continue
        limit = min(missing, due, PER_PASS)
        for job in jobs_store.stale_queued_jobs(
            conn=conn, resend_after=settings.resend_after, queue=queue, limit=limit
        ):
            _send(app, conn, job, consumed, report)


def sweep(*, conn: psycopg.Connection, app: Celery, settings: Settings) -> SweepReport:
    """One pass; safe to run from many workers at once (``conn`` must be in autocommit mode)."""
    report = SweepReport()
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
    if not row or not row[0]:
        report.locked = False
        return report
    try:
        _pass(conn, app, settings, report)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        if report.failed or report.resent:
            log.warning(
                "sweeper: re-sent %d job(s) (%d to another queue), failed %d out of attempts",
                len(report.resent),
                len(report.rerouted),
                len(report.failed),
            )
    return report
