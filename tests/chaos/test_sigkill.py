"""A worker killed with SIGKILL mid-job: the job still completes, once, on a new worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers


def test_job_survives_its_worker_being_killed(
    isolated_database: str, broker_url: str, tmp_path: Path, st_model
) -> None:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_LEASE_SECONDS="2")
    log = tmp_path / "workers.log"
    first = helpers.start_worker(env, isolated_database, "chaos-first@%h", log)
    eq = EmbedQ(get_settings(env, env_file=False))
    second = None
    try:
        texts = helpers.unique_texts(1200)
        job = eq.encode(texts, batch_size=8)
        helpers.wait_until(lambda: job.progress[0] >= 400, timeout=120, what="the job to pass 400 texts")

        os.killpg(first.pid, signal.SIGKILL)  # the main process and its pool child, with no warning
        first.wait()
        assert job.status == JobStatus.RUNNING

        second = helpers.start_worker(env, isolated_database, "chaos-second@%h", log)
        info = job.wait(timeout=180)
        assert info.status == JobStatus.SUCCEEDED, log.read_text()[-3000:]
        assert info.attempts == 2
        assert info.result is not None and info.result["cached"] > 0  # resumed from what the first attempt stored
        vectors = job.result(timeout=1)
        assert np.abs(vectors - st_model.encode(texts, batch_size=8)).max() < 1e-5

        with eq._pool.connection() as conn:
            jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            outputs = conn.execute("SELECT count(*) FROM encode_outputs WHERE job_id = %s", (job.id,)).fetchone()[0]
            cached = conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        assert jobs == 1  # no second job appeared for the re-sent message
        assert outputs == 1200
        assert cached == 1200  # both attempts cached under the same model version
    finally:
        eq.close()
        if second is not None:
            stop_worker(second, timeout=30)
