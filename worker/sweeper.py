"""The sweeper: re-sends jobs whose message was lost and fails jobs out of attempts.

Any number of workers run it; a transaction-scoped advisory lock lets one
sweep at a time. A queued job is re-sent only when its queue on the broker is
empty (a backlog means its message is most likely still waiting there) and
it was last sent longer ago than ``resend_after`` (doubling per re-send). A
running job whose lease expired is re-sent at once, so another worker can
take it over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from celery import Celery

from api_client.celery_conf import TASK_NAMES
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
    skipped_backlog: int = 0


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


def sweep(*, conn: psycopg.Connection, app: Celery, settings: Settings) -> SweepReport:
    """One pass; safe to run from many workers at once."""
    report = SweepReport()
    with conn.transaction():
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()
        if not row or not row[0]:
            report.locked = False
            return report
        report.failed = jobs_store.fail_exhausted(conn=conn)
        depths: dict[str, int] = {}
        for job_id, queue, status in jobs_store.jobs_to_resend(conn=conn, resend_after=settings.resend_after):
            if status == "queued":
                if queue not in depths:
                    depths[queue] = queue_depth(app, queue)
                if depths[queue] > 0:
                    report.skipped_backlog += 1
                    continue
            app.send_task(TASK_NAMES[JobKind.ENCODE], kwargs={"job_id": job_id}, queue=queue)
            jobs_store.mark_sent(conn=conn, job_id=job_id)
            report.resent.append(job_id)
    if report.failed or report.resent:
        log.warning("sweeper: re-sent %d job(s), failed %d out of attempts", len(report.resent), len(report.failed))
    return report
