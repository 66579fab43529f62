"""The sweeper's rules, pass by pass, against a broker and a database of their own (no worker)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from celery import Celery

from api_client.celery_conf import producer_app
from api_client.settings import Settings, get_settings
from api_client.states import JobKind
from api_client.store import jobs as jobs_store
from tests import helpers
from worker.sweeper import queue_depth, sweep

BATCH = "embedq.cpu.batch"


@pytest.fixture
def setup(isolated_database: str, broker_url: str) -> Iterator[tuple[psycopg.Connection, Celery, Settings]]:
    settings = get_settings(helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database), env_file=False)
    app = producer_app(settings)
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(BATCH)
        connection.default_channel.queue_purge("embedq.cpu.interactive")
    with psycopg.connect(isolated_database, autocommit=True) as conn:
        yield conn, app, settings
    app.close()


def job(conn: psycopg.Connection, queue: str = BATCH, **columns: object) -> str:
    info, _ = jobs_store.create_job(
        conn=conn, kind=JobKind.ENCODE, queue=queue, request={"texts": ["x"]}, total=1, max_attempts=3
    )
    sets = ", ".join(f"{name} = %s" for name in columns)
    if sets:
        conn.execute(f"UPDATE jobs SET {sets} WHERE id = %s", (*columns.values(), info.id))
    return info.id


def message_ids(app: Celery, queue: str) -> list[str]:
    ids = []
    with app.connection_for_read() as connection:
        while (message := connection.default_channel.basic_get(queue=queue, no_ack=True)) is not None:
            ids.append(message.headers["id"])
    return ids


def test_queued_jobs_wait_while_their_queue_has_a_backlog(setup) -> None:
    conn, app, settings = setup
    stale = job(conn, sent_at="2000-01-01")
    app.send_task("embedq.encode", kwargs={"job_id": "00000000-0000-0000-0000-000000000000"}, queue=BATCH)
    assert queue_depth(app, BATCH) == 1

    report = sweep(conn=conn, app=app, settings=settings)
    assert report.resent == [] and report.skipped_backlog == [BATCH]

    message_ids(app, BATCH)  # drain the backlog
    report = sweep(conn=conn, app=app, settings=settings)
    assert report.resent == [stale]
    assert message_ids(app, BATCH) == [stale]
    assert helpers.job_row(conn, stale)["sends"] == 2
    assert sweep(conn=conn, app=app, settings=settings).resent == []  # backed off now


def test_a_job_whose_worker_died_is_resent_despite_a_backlog(setup) -> None:
    conn, app, settings = setup
    for _ in range(3):
        job(conn, sent_at="2000-01-01")  # a backlog of stale queued jobs
    app.send_task("embedq.encode", kwargs={"job_id": "00000000-0000-0000-0000-000000000000"}, queue=BATCH)
    lapsed = job(conn, status="running", attempts=1, lease_expires_at="2000-01-01")
    report = sweep(conn=conn, app=app, settings=settings)
    assert report.resent == [lapsed]


def test_out_of_attempts_fails_and_undeclared_queues_fall_back(setup) -> None:
    conn, app, settings = setup
    exhausted = job(conn, status="running", attempts=3, lease_expires_at="2000-01-01")
    odd = job(conn, queue="someone.elses.queue", sent_at="2000-01-01")
    report = sweep(conn=conn, app=app, settings=settings)
    assert report.failed == [exhausted]
    assert helpers.job_row(conn, exhausted)["error"]["type"] == "AttemptsExhausted"
    assert report.resent == [odd]
    assert message_ids(app, "embedq.cpu.interactive") == [odd]


def test_one_sweeper_at_a_time(setup, isolated_database: str) -> None:
    conn, app, settings = setup
    with psycopg.connect(isolated_database, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (0x656D6271,))
        assert sweep(conn=conn, app=app, settings=settings).locked is False
