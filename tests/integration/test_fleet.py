"""Lanes and the fleet on the session's worker: a process per lane, `embedq fleet`, routing by presence."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from unittest import mock

import psutil
import psycopg

from api_client import EmbedQ
from api_client.celery_conf import producer_app
from api_client.settings import get_settings
from api_client.states import JobStatus
from api_client.store import jobs as jobs_store
from api_client.store import workers as workers_store
from embedq.worker.layout import plan
from embedq.worker.stack import stop_worker
from embedq.worker.store import workers as presence_store
from embedq.worker.supervisor import spawn
from tests import helpers
from tests.conftest import SESSION_WORKER
from tests.integration.test_cli import embedq

NODE = SESSION_WORKER.replace("%h", socket.gethostname())


def session_rows(conn: psycopg.Connection, within: float) -> dict[str, workers_store.WorkerRow]:
    rows = workers_store.alive(conn=conn, within=within)
    return {row.lanes[0] if len(row.lanes) == 1 else "all": row for row in rows if row.node == NODE}


def test_the_default_worker_consumes_each_lane_in_a_process_of_its_own(eq, db, settings, session_worker) -> None:
    rows = session_rows(db, settings.worker_alive)
    assert set(rows) == {"interactive", "batch"}
    interactive, batch = rows["interactive"], rows["batch"]
    assert interactive.queues == ["celery", "embedq.cpu.interactive"] and batch.queues == ["embedq.cpu.batch"]
    assert interactive.supervisor_pid == batch.supervisor_pid == session_worker.pid
    assert interactive.pid != batch.pid
    assert {psutil.Process(row.pid).ppid() for row in rows.values()} == {session_worker.pid}
    assert interactive.backend == batch.backend == settings.backend and interactive.devices == ["cpu"]
    # The interactive consumer runs its jobs itself (the solo pool); the batch one has pool processes, its
    # children, that yield the CPU to the interactive one.
    assert interactive.pool_pids == [interactive.pid]
    assert batch.pool_pids and all(psutil.Process(pid).ppid() == batch.pid for pid in batch.pool_pids)
    assert {psutil.Process(pid).nice() for pid in interactive.pool_pids} == {0}
    assert {psutil.Process(pid).nice() for pid in batch.pool_pids} == {10}


def test_a_single_text_job_finishes_while_a_long_batch_job_runs_and_fleet_shows_who_runs_what(
    eq, db, worker_env
) -> None:
    texts = helpers.unique_texts(2000)
    long = [" ".join(texts[i : i + 3]) for i in range(0, len(texts))]
    batch = eq.encode(long, lane="batch")
    try:
        helpers.wait_until(lambda: batch.status == JobStatus.RUNNING, timeout=60, what="the batch job to run")

        out = embedq(["fleet", "--json"], worker_env)
        assert out.returncode == 0, out.stderr.decode()
        consumers = {row["name"]: row for row in json.loads(out.stdout)["workers"] if row["node"] == NODE}
        assert consumers[f"{NODE}:batch"]["running"] == [batch.id]
        assert consumers[f"{NODE}:interactive"]["running"] == []
        assert consumers[f"{NODE}:interactive"]["lanes"] == ["interactive"]

        single = eq.encode(helpers.unique_texts(1))
        assert single.result(timeout=60).shape == (1, 384)
        assert single.info().queue == "embedq.cpu.interactive"
        assert batch.status == JobStatus.RUNNING  # the single-text job did not wait for it
    finally:
        batch.cancel()
    assert batch.wait(timeout=60).status == JobStatus.CANCELLED


def test_fleet_lists_the_live_worker_with_its_lanes_and_backend(eq, worker_env) -> None:
    out = embedq(["fleet"], worker_env)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert f"{NODE}:interactive  cpu  lanes interactive  backend" in text
    assert f"{NODE}:batch  cpu  lanes batch  backend" in text
    assert "queues  embedq.cpu.batch" in text


def test_a_job_on_a_queue_no_live_worker_consumes_says_so_and_is_moved(eq, db) -> None:
    created = jobs_store.create_job(
        conn=db,
        kind="encode",
        queue="embedq.gpu.batch",
        request={"texts": helpers.unique_texts(1)},
        total=1,
        max_attempts=3,
    )
    job = eq.job(created.info.id)
    detail = job.status_detail()
    assert "queued on embedq.gpu.batch, which no live worker consumes" in detail, detail
    assert "the sweeper re-sends it to embedq.cpu.batch" in detail, detail
    assert job.result(timeout=60).shape == (1, 384)  # the sweeper did, and the batch consumer ran it
    assert job.info().queue == "embedq.cpu.batch"


def test_batch_work_goes_to_gpu_only_while_a_gpu_worker_is_alive(eq, db, settings) -> None:
    name = f"fake-gpu-{uuid.uuid4().hex[:6]}@host"
    presence_store.record_presence(
        conn=db, name=name, hostname="host", pid=1, hardware="gpu", queues=["embedq.gpu.batch"],
        concurrency=1, started_at=dt.datetime.now(dt.UTC), lanes=["batch"], devices=["0"],
    )  # fmt: skip
    try:
        with EmbedQ(settings) as client:  # a new client: the GPU check is cached per client
            job = client.encode(helpers.unique_texts(1), lane="batch")
            assert job.info().queue == "embedq.gpu.batch"
            assert f"1 live consumer(s) take from: {name}" in job.status_detail()
            assert client.encode(helpers.unique_texts(1)).info().queue == "embedq.cpu.interactive"
            job.cancel()
    finally:
        presence_store.remove(conn=db, name=name)
        app = producer_app(settings)
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge("embedq.gpu.batch")
        app.close()
    with EmbedQ(settings) as client:
        job = client.encode(helpers.unique_texts(1), lane="batch")
        assert job.info().queue == "embedq.cpu.batch"
        assert job.result(timeout=60).shape == (1, 384)


def test_a_consumer_that_dies_takes_its_worker_down_with_it(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database)
    log = tmp_path / "worker.log"
    worker = helpers.start_worker(env, isolated_database, "doomed@%h", log)
    try:
        with psycopg.connect(isolated_database, autocommit=True) as conn:
            rows = {row.name.rsplit(":", 1)[1]: row for row in workers_store.alive(conn=conn, within=30)}
        os.kill(rows["interactive"].pid, signal.SIGKILL)
        assert worker.wait(timeout=60) == 1, log.read_text()[-3000:]  # the batch consumer was stopped too
        assert not psutil.pid_exists(rows["batch"].pid) or psutil.Process(rows["batch"].pid).status() == "zombie"
    finally:
        stop_worker(worker, timeout=30)


def test_a_spawned_consumer_runs_its_spec_in_a_fresh_interpreter(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    """The path GPU consumers take (``python -m embedq.worker.consumer SPEC``), here with a CPU spec."""
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database)
    (consumer,) = plan(
        name="spawned@%h", hardware="cpu", cores=2, lanes=("batch",), threads=1, sweeper=False, plain_queue=False
    )
    log = tmp_path / "consumer.log"
    with log.open("wb") as out, mock.patch.dict(os.environ, env):
        proc = spawn(consumer, loglevel="info", stdout=out, stderr=subprocess.STDOUT)
    try:
        with psycopg.connect(isolated_database, autocommit=True) as conn:
            found = helpers.wait_until(
                lambda: [r for r in workers_store.alive(conn=conn, within=30) if r.name == consumer.name],
                timeout=120,
                what="the spawned consumer's heartbeat",
            )
            (row,) = found
            assert (row.pid, row.supervisor_pid) == (proc.pid, os.getpid())
            assert (row.lanes, row.devices, row.threads, row.queues) == (["batch"], ["cpu"], 1, ["embedq.cpu.batch"])
            with EmbedQ(get_settings(env, env_file=False)) as eq:
                assert eq.encode(helpers.unique_texts(2), lane="batch").result(timeout=120).shape == (2, 384)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
            assert not [r for r in workers_store.alive(conn=conn, within=30) if r.name == consumer.name]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_consumers_stop_when_their_embedq_worker_is_killed(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database)
    worker = helpers.start_worker(env, isolated_database, "orphaned@%h", tmp_path / "worker.log")
    try:
        with psycopg.connect(isolated_database, autocommit=True) as conn:
            pids = [row.pid for row in workers_store.alive(conn=conn, within=30)]
        assert len(pids) == 2
        os.kill(worker.pid, signal.SIGKILL)  # the supervisor alone, as an OOM killer would
        worker.wait()

        def gone() -> bool:
            return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)

        helpers.wait_until(gone, timeout=60, what="the consumers to stop with their supervisor")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
