"""The sweeper: re-sends jobs whose message was lost and fails jobs out of attempts.

Any number of workers run it; a session advisory lock lets one sweep at a
time. Each pass:

1. fails jobs out of attempts that no live lease holds (``AttemptsExhausted``,
   naming the last error);
2. re-sends running jobs whose lease expired, so another worker takes them
   over (at the next pass the first time, then with a doubling backoff);
3. re-sends queued jobs last sent longer ago than ``resend_after`` (doubling
   per re-send), but only from queues that are empty on the broker: a
   backlog means their messages are most likely still waiting there.

Database reads and marks are single statements; messages are published
outside any transaction, one job at a time, so a broker failure costs only
the jobs not yet sent, which the next pass picks up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from celery import Celery

from api_client.celery_conf import DEFAULT_QUEUE, TASK_NAMES
from api_client.routing import QUEUES
from api_client.settings import Settings
from api_client.states import JobKind
from api_client.store import jobs as jobs_store

log = logging.getLogger(__name__)

LOCK_KEY = 0x656D6271  # "embq"


@dataclass
class SweepReport:
    locked: bool = True
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    skipped_backlog: list[str] = field(default_factory=list)


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` on the broker (0 when the queue does not exist yet)."""
    with app.connection_for_read() as connection:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except Exception:  # the queue does not exist (an empty Redis list is no key at all)
            return 0
        finally:
            try:
                channel.close()
            except Exception:  # a passive declare on a missing AMQP queue closes the channel itself
                log.debug("channel already closed")


def _send(app: Celery, conn: psycopg.Connection, job_id: str, queue: str) -> None:
    queue = queue if queue in QUEUES else DEFAULT_QUEUE
    app.send_task(TASK_NAMES[JobKind.ENCODE], kwargs={"job_id": job_id}, queue=queue, task_id=job_id)
    jobs_store.mark_sent(conn=conn, job_id=job_id)


def _pass(conn: psycopg.Connection, app: Celery, settings: Settings, report: SweepReport) -> None:
    report.failed = jobs_store.fail_exhausted(conn=conn)
    for job_id, queue in jobs_store.lapsed_jobs(conn=conn, resend_after=settings.resend_after):
        _send(app, conn, job_id, queue)
        report.resent.append(job_id)
    queues = jobs_store.stale_queues(conn=conn, resend_after=settings.resend_after)
    empty = [queue for queue in queues if queue_depth(app, queue if queue in QUEUES else DEFAULT_QUEUE) == 0]
    report.skipped_backlog = sorted(set(queues) - set(empty))
    for job_id, queue in jobs_store.stale_queued_jobs(conn=conn, resend_after=settings.resend_after, queues=empty):
        _send(app, conn, job_id, queue)
        report.resent.append(job_id)


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
            log.warning("sweeper: re-sent %d job(s), failed %d out of attempts", len(report.resent), len(report.failed))
    return report
