"""Two worker processes share one chunked job, and finish it when one of them is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from celery import Celery

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

CHUNK = 200
WAIT = 240


@dataclass
class Pair:
    """Two workers on their own database and Redis db, and a client that chunks by 200."""

    env: dict[str, str]
    database_url: str
    workers: dict[str, subprocess.Popen]
    """node name (``%h`` expanded) → worker process."""
    log: Path
    eq: EmbedQ

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def pair(isolated_database: str, broker_url: str, tmp_path: Path) -> Iterator[Pair]:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_CHUNK_SIZE=str(CHUNK))
    log = tmp_path / "workers.log"
    tag = uuid.uuid4().hex[:6]
    names = [f"chunks-{tag}-a@%h", f"chunks-{tag}-b@%h"]
    workers: dict[str, subprocess.Popen] = {}
    eq = None
    try:
        for name in names:
            workers[name.replace("%h", socket.gethostname())] = helpers.start_worker(env, isolated_database, name, log)
        eq = EmbedQ(get_settings(env, env_file=False))
        yield Pair(env, isolated_database, workers, log, eq)
    finally:
        if eq is not None:
            eq.close()
        for proc in workers.values():
            stop_worker(proc, timeout=30)
    assert not helpers.processes_mentioning(f"chunks-{tag}-"), "a worker outlived its test"


def chunk_rows(database_url: str, parent_id: str) -> list[tuple]:
    """``(chunk_index, status, worker node, attempts)`` of each chunk (the node: the consumer's name without
    its ``:<lane>`` suffix)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT chunk_index, status, regexp_replace(split_part(worker, '/', 1), ':[a-z0-9]+$', ''), attempts "
            "FROM jobs "
            "WHERE parent_id = %s ORDER BY chunk_index",
            (parent_id,),
        ).fetchall()
    return [tuple(row) for row in rows]


def outputs(database_url: str, job_id: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT item) FROM encode_outputs WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.slow
def test_two_workers_share_one_chunked_job(pair: Pair, st_model) -> None:
    texts = helpers.unique_texts(2000)
    job = pair.eq.encode(texts)
    info = job.wait(timeout=WAIT)
    assert info.status == JobStatus.SUCCEEDED, pair.log_tail()
    assert info.chunks == 10 and info.progress == (2000, 2000)
    assert info.result is not None and info.result["count"] == 2000 and info.result["chunks"] == 10

    rows = chunk_rows(pair.database_url, job.id)
    assert [row[0] for row in rows] == list(range(10))
    assert {row[1] for row in rows} == {"succeeded"}
    assert {row[2] for row in rows} == set(pair.workers), rows  # both workers took chunks
    assert outputs(pair.database_url, job.id) == (2000, 2000)
    assert np.abs(job.result(timeout=1) - st_model.encode(texts)).max() < 1e-5


def test_a_plain_celery_inline_request_is_split_by_the_worker(pair: Pair, st_model) -> None:
    texts = helpers.unique_texts(450)
    task_id = str(uuid.uuid4())
    app = Celery(broker=pair.env["EMBEDQ_BROKER_URL"])
    try:
        app.send_task("embedq.encode", kwargs={"request": {"texts": texts}}, queue="embedq.cpu.batch", task_id=task_id)
    finally:
        app.close()

    with psycopg.connect(pair.database_url, autocommit=True) as conn:
        helpers.wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM jobs WHERE id = %s AND status IN ('succeeded', 'failed')", (task_id,)
            ).fetchone(),
            timeout=WAIT,
            what="the inline job to finish",
        )
        row = helpers.job_row(conn, task_id)
        assert row["status"] == "succeeded", (row["error"], pair.log_tail())
        assert row["chunks"] == 3 and row["parent_id"] is None
        assert row["result"]["count"] == 450 and row["result"]["chunks"] == 3
        vectors = helpers.job_vectors_sql(conn, task_id)
    assert [row[:2] for row in chunk_rows(pair.database_url, task_id)] == [
        (0, "succeeded"),
        (1, "succeeded"),
        (2, "succeeded"),
    ]
    assert outputs(pair.database_url, task_id) == (450, 450)
    assert np.abs(vectors - st_model.encode(texts)).max() < 1e-5


@pytest.mark.slow
def test_a_chunked_job_survives_one_of_its_workers_being_killed(pair: Pair, st_model) -> None:
    texts = helpers.unique_texts(2000)
    job = pair.eq.encode(texts)

    def both_running() -> set[str] | None:
        held = {node for _, status, node, _ in chunk_rows(pair.database_url, job.id) if status == "running"}
        return held if held == set(pair.workers) else None

    helpers.wait_until(both_running, timeout=WAIT, what="both workers to hold a running chunk")
    victim = sorted(pair.workers)[0]
    os.killpg(pair.workers[victim].pid, signal.SIGKILL)  # the main process and its pool child, with no warning
    pair.workers[victim].wait()

    info = job.wait(timeout=WAIT)
    assert info.status == JobStatus.SUCCEEDED, (info.error, pair.log_tail())
    assert info.attempts == 2  # a parent's attempts are its chunks' most
    rows = chunk_rows(pair.database_url, job.id)
    assert {row[1] for row in rows} == {"succeeded"}
    retried = [row for row in rows if row[3] == 2]
    assert retried, rows
    survivor = sorted(pair.workers)[1]
    assert {row[2] for row in retried} == {survivor}  # the lost chunk was finished by the worker left
    assert outputs(pair.database_url, job.id) == (2000, 2000)
    assert np.abs(job.result(timeout=1) - st_model.encode(texts)).max() < 1e-5
