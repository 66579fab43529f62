"""Finished jobs are announced with NOTIFY, which Job.wait listens for."""

from __future__ import annotations

import psycopg

from api_client import EmbedQ, JobStatus
from api_client.notify import Notifier
from tests import helpers


def notifications(conn: psycopg.Connection, timeout: float = 10.0) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]


def test_every_terminal_state_is_notified_once(eq: EmbedQ, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN embedq_jobs")
        done = eq.encode(helpers.unique_texts(2))
        assert notifications(listener) == [done.id]
        assert done.status == JobStatus.SUCCEEDED

        cancelled = eq.encode(helpers.unique_texts(2000), batch_size=8)
        helpers.wait_until(lambda: cancelled.status == JobStatus.RUNNING, what="the job to start")
        cancelled.cancel()
        assert notifications(listener) == [cancelled.id]
        assert cancelled.cancel() == JobStatus.CANCELLED
        assert notifications(listener, timeout=1.0) == []


def test_notifier_wakes_exactly_the_waiters_of_the_notified_job(database_url: str) -> None:
    notifier = Notifier(database_url)
    try:
        mine = notifier.register("job-a")
        other = notifier.register("job-b")
        # Connecting wakes every waiter once (so each re-reads); start from quiet events.
        helpers.wait_until(mine.is_set, what="the listener to connect")
        mine.clear()
        other.clear()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('embedq_jobs', 'job-a')")
        assert mine.wait(timeout=10)
        assert not other.is_set()
        notifier.unregister("job-a", mine)
        notifier.unregister("job-b", other)
    finally:
        notifier.close()
