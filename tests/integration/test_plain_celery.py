"""A client that is not ours: only Celery, JSON and plain SQL."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import numpy as np
from celery import Celery

from tests import helpers


def wait_succeeded(db, job_id: str) -> dict:
    helpers.wait_until(
        lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s AND status = 'succeeded'", (job_id,)).fetchone(),
        what=f"job {job_id} to succeed",
    )
    return helpers.job_row(db, job_id)


def test_send_task_with_an_inline_request(eq, db, broker_url: str, st_model) -> None:
    texts = helpers.unique_texts(5)
    app = Celery(broker=broker_url)
    task_id = str(uuid.uuid4())
    app.send_task(
        "embedq.encode",
        kwargs={"request": {"texts": texts, "normalize": True}},
        queue="embedq.cpu.interactive",
        task_id=task_id,
    )
    app.close()
    row = wait_succeeded(db, task_id)
    assert row["kind"] == "encode" and row["queue"] == "embedq.cpu.interactive"
    assert row["result"]["count"] == 5
    raw = helpers.job_vectors_sql(db, task_id)
    vectors = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.abs(vectors - st_model.encode(texts, normalize_embeddings=True)).max() < 1e-5


def test_send_task_without_a_queue_lands_where_workers_listen(eq, db, broker_url: str) -> None:
    app = Celery(broker=broker_url)
    task_id = str(uuid.uuid4())
    app.send_task("embedq.encode", kwargs={"request": {"texts": ["no queue named"]}}, task_id=task_id)
    app.close()
    row = wait_succeeded(db, task_id)
    assert row["queue"] == "celery"


def test_a_redelivered_inline_message_makes_no_second_job(eq, db, broker_url: str) -> None:
    app = Celery(broker=broker_url)
    task_id = str(uuid.uuid4())
    for _ in range(2):
        app.send_task(
            "embedq.encode", kwargs={"request": {"texts": ["once"]}}, queue="embedq.cpu.interactive", task_id=task_id
        )
    app.close()
    wait_succeeded(db, task_id)
    assert eq.encode(["after"]).result(timeout=60).shape == (1, 384)  # both messages are consumed by now
    assert db.execute("SELECT count(*) FROM jobs WHERE request->'texts' = '[\"once\"]'").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM encode_outputs WHERE job_id = %s", (task_id,)).fetchone()[0] == 1


def test_celery_call_command_line(eq, db, worker_env: dict[str, str]) -> None:
    texts = helpers.unique_texts(3)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "embedq.worker.app",
            "call",
            "embedq.encode",
            "--kwargs",
            json.dumps({"request": {"texts": texts}}),
        ],
        env={**helpers.env_without_embedq(), **worker_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    task_id = out.stdout.strip().splitlines()[-1]
    row = wait_succeeded(db, task_id)
    assert row["queue"] == "embedq.cpu.interactive"
    assert helpers.job_vectors_sql(db, task_id).shape == (3, 384)
