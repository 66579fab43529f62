"""The sweeper's rules, pass by pass, against a broker and a database of their own (no worker)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from celery import Celery

from api_client.celery_conf import producer_app
from api_client.routing import QUEUES
from api_client.settings import Settings, get_settings
from api_client.states import JobKind
from api_client.store import jobs as jobs_store
from embedq.worker.store import workers as workers_store
from embedq.worker.sweeper import queue_depth, sweep
from tests import helpers

BATCH = "embedq.cpu.batch"
INTERACTIVE = "embedq.cpu.interactive"
DUMMY = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def setup(isolated_database: str, broker_url: str) -> Iterator[tuple[psycopg.Connection, Celery, Settings]]:
    settings = get_settings(helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database), env_file=False)
    app = producer_app(settings)
    with app.connection_for_write() as connection:
        for queue in QUEUES:
            connection.default_channel.queue_purge(queue)
    with psycopg.connect(isolated_database, autocommit=True) as conn:
        yield conn, app, settings
    app.close()


def job(conn: psycopg.Connection, queue: str = BATCH, kind: JobKind = "encode", **columns: object) -> str:
    info = jobs_store.create_job(
        conn=conn, kind=kind, queue=queue, request={"texts": ["x"]}, total=1, max_attempts=3
    ).info
    sets = ", ".join(f"{name} = %s" for name in columns)
    if sets:
        conn.execute(f"UPDATE jobs SET {sets} WHERE id = %s", (*columns.values(), info.id))
    return info.id


def live_worker(conn: psycopg.Connection, *queues: str) -> None:
    workers_store.record_presence(
        conn=conn,
        name="sweep-test@host",
        hostname="host",
        pid=1,
        hardware="cpu",
        queues=list(queues),
        concurrency=1,
        started_at=dt.datetime.now(dt.UTC),
    )


def messages(app: Celery, queue: str) -> list[tuple[str, str]]:
    """``(task id, task name)`` of every message waiting in ``queue``, taken off it."""
    found = []
    with app.connection_for_read() as connection:
        while (message := connection.default_channel.basic_get(queue=queue, no_ack=True)) is not None:
            found.append((message.headers["id"], message.headers["task"]))
    return found


def message_ids(app: Celery, queue: str) -> list[str]:
    return [task_id for task_id, _ in messages(app, queue)]


def test_each_job_goes_back_to_its_own_kinds_task(setup) -> None:
    conn, app, settings = setup
    live_worker(conn, BATCH, INTERACTIVE)
    lost = job(conn, kind="similarity", sent_at="2000-01-01")
    lapsed = job(conn, kind="paraphrases", status="running", attempts=1, lease_expires_at="2000-01-01")
    encode = job(conn, sent_at="2000-01-01")
    report = sweep(conn=conn, app=app, settings=settings)
    assert sorted(report.resent) == sorted([lost, lapsed, encode])
    assert sorted(messages(app, BATCH)) == sorted(
        [(lost, "embedq.similarity"), (lapsed, "embedq.paraphrases"), (encode, "embedq.encode")]
    )


def test_a_parent_is_never_sent_its_chunks_are(setup) -> None:
    conn, app, settings = setup
    live_worker(conn, BATCH, INTERACTIVE)
    created = jobs_store.create_job(
        conn=conn,
        kind="encode",
        queue=BATCH,
        request={"texts": ["a", "b", "c"]},
        total=3,
        max_attempts=3,
        chunks=jobs_store.split_list({"texts": ["a", "b", "c"]}, "texts", 2),
    )
    conn.execute("UPDATE jobs SET sent_at = '2000-01-01'")
    chunk_ids = [job_id for job_id, _ in created.messages]
    assert len(chunk_ids) == 2 and created.info.id not in chunk_ids
    report = sweep(conn=conn, app=app, settings=settings)
    assert sorted(report.resent) == sorted(chunk_ids)
    assert sorted(message_ids(app, BATCH)) == sorted(chunk_ids)


def test_a_queue_holding_every_message_is_left_alone(setup) -> None:
    conn, app, settings = setup
    live_worker(conn, BATCH, INTERACTIVE)
    stale = job(conn, sent_at="2000-01-01")
    app.send_task("embedq.encode", kwargs={"job_id": stale}, queue=BATCH, task_id=stale)
    assert queue_depth(app, BATCH) == 1

    report = sweep(conn=conn, app=app, settings=settings)
    assert report.resent == [] and report.skipped_backlog == [BATCH]

    message_ids(app, BATCH)  # the message is lost
    report = sweep(conn=conn, app=app, settings=settings)
    assert report.resent == [stale]
    assert message_ids(app, BATCH) == [stale]
    assert helpers.job_row(conn, stale)["sends"] == 2
    assert sweep(conn=conn, app=app, settings=settings).resent == []  # backed off now


def test_lost_messages_are_found_under_a_steady_backlog(setup) -> None:
    conn, app, settings = setup
    live_worker(conn, BATCH, INTERACTIVE)
    old, newer = job(conn, sent_at="2000-01-01"), job(conn, sent_at="2000-01-02")
    waiting = job(conn)  # sent just now, its message in the queue
    for job_id in (newer, waiting):
        app.send_task("embedq.encode", kwargs={"job_id": job_id}, queue=BATCH, task_id=job_id)
    # Three queued jobs, two messages: one is lost, and the oldest due job is sent again.
    assert sweep(conn=conn, app=app, settings=settings).resent == [old]


def test_a_job_whose_worker_died_is_resent_despite_a_backlog(setup) -> None:
    conn, app, settings = setup
    live_worker(conn, BATCH, INTERACTIVE)
    for _ in range(3):
        app.send_task("embedq.encode", kwargs={"job_id": DUMMY}, queue=BATCH)
    lapsed = job(conn, status="running", attempts=1, lease_expires_at="2000-01-01")
    assert sweep(conn=conn, app=app, settings=settings).resent == [lapsed]


def test_jobs_of_a_queue_nobody_consumes_move_to_one_that_is(setup) -> None:
    conn, app, settings = setup
    live_worker(conn, BATCH, INTERACTIVE)  # the GPU worker went away
    queued = job(conn, queue="embedq.gpu.batch", sent_at="2000-01-01")
    lapsed = job(conn, queue="embedq.gpu.batch", status="running", attempts=1, lease_expires_at="2000-01-01")
    report = sweep(conn=conn, app=app, settings=settings)
    assert sorted(report.rerouted) == sorted([queued, lapsed])
    assert sorted(message_ids(app, BATCH)) == sorted([queued, lapsed])
    assert helpers.job_row(conn, queued)["queue"] == BATCH


def test_out_of_attempts_fails_and_unknown_queues_fall_back(setup) -> None:
    conn, app, settings = setup
    exhausted = job(conn, status="running", attempts=3, lease_expires_at="2000-01-01")
    odd = job(conn, queue="someone.elses.queue", sent_at="2000-01-01")
    report = sweep(conn=conn, app=app, settings=settings)
    assert report.failed == [exhausted]
    assert helpers.job_row(conn, exhausted)["error"]["type"] == "AttemptsExhausted"
    assert helpers.job_row(conn, exhausted)["error"]["detail"]["attempts"] == 3
    assert report.resent == [odd]
    assert message_ids(app, INTERACTIVE) == [odd]


def test_one_sweeper_at_a_time(setup, isolated_database: str) -> None:
    conn, app, settings = setup
    with psycopg.connect(isolated_database, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (0x656D6271,))
        assert sweep(conn=conn, app=app, settings=settings).locked is False
