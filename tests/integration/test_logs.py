"""A worker's log: one line at each job's start and end, its fields on every line in JSON, and no noise."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from api_client import EmbedQ
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

NOISE = (
    "ignored",  # Celery's line for a task whose result it did not store
    "received",  # Celery's line for every message
    "faiss.loader",
    "Loading SentenceTransformer model",
    "Batches:",  # progress bars
    "heavily recommended",
    "-------------- [queues]",  # Celery's banner
    "CPendingDeprecationWarning",
)


def test_json_lines_carry_each_job_and_nothing_else_is_said(isolated_database, broker_url, tmp_path: Path) -> None:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_LOG_FORMAT="json")
    log = tmp_path / "worker.log"
    worker = helpers.start_worker(env, isolated_database, f"logs-{uuid.uuid4().hex[:6]}@%h", log)
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        small = eq.encode(helpers.unique_texts(2))
        small.wait(timeout=60)
        big = eq.encode(helpers.unique_texts(300), lane="batch")
        big.wait(timeout=120)
        eq.create_collection("logs")
        eq.upsert("logs", [{"id": "1", "text": "my card is blocked"}]).wait(timeout=60)
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    # Every line is JSON but Celery's own notice of its shutdown, which it prints rather than logs.
    assert {line for line in lines if not line.startswith("{")} <= {"worker: Warm shutdown (MainProcess)"}
    for job, queue, lane, items in (
        (small, "embedq.cpu.interactive", "interactive", 2),
        (big, "embedq.cpu.batch", "batch", 300),
    ):
        mine = [record for record in records if record.get("job_id") == job.id]
        start, end = mine[0], mine[-1]
        assert start["message"].startswith(f"job {job.id} encode started")
        assert end["message"].startswith(f"job {job.id} encode succeeded in") and end["status"] == "succeeded"
        for record in (start, end):
            assert (record["kind"], record["queue"], record["lane"], record["items"]) == ("encode", queue, lane, items)
        assert end["seconds"] > 0
    text = log.read_text()
    for noise in NOISE:
        assert noise not in text, noise
