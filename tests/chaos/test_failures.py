"""Failures inside a running job: a lost database connection, a takeover, the soft time limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers


def test_a_job_survives_losing_its_database_connection(eq: EmbedQ, db) -> None:
    texts = helpers.unique_texts(1200)
    job = eq.encode(texts, batch_size=8)
    helpers.wait_until(lambda: job.progress[0] >= 300, timeout=120, what="the job to pass 300 texts")
    killed = db.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'embedq-worker %'"
    ).fetchone()[0]
    assert killed >= 1
    info = job.wait(timeout=180)
    assert info.status == JobStatus.SUCCEEDED
    assert info.attempts == 2 and info.error is None
    assert info.result is not None and info.result["cached"] > 0  # the retry resumed from the flushed vectors
    assert job.result(timeout=1).shape == (1200, 384)


def test_a_job_taken_over_is_never_finished_by_its_first_worker(eq: EmbedQ, db) -> None:
    job = eq.encode(helpers.unique_texts(1500), batch_size=8)
    helpers.wait_until(lambda: job.progress[0] > 0, timeout=120, what="progress")
    # As if the lease had lapsed and another worker had claimed the job.
    db.execute(
        "UPDATE jobs SET attempts = attempts + 1, worker = 'other@host/1', "
        "lease_expires_at = now() + interval '1 hour' WHERE id = %s",
        (job.id,),
    )
    assert eq.encode(["the first worker moved on"]).result(timeout=120).shape == (1, 384)
    row = helpers.job_row(db, job.id)
    assert row["status"] == "running" and row["worker"] == "other@host/1"
    assert db.execute("SELECT count(*) FROM encode_outputs WHERE job_id = %s", (job.id,)).fetchone()[0] == 0
    job.cancel()


def test_the_soft_time_limit_retries_a_job_that_made_progress_and_fails_one_that_did_not(
    isolated_database: str, broker_url: str, tmp_path: Path, st_model
) -> None:
    env = helpers.worker_env(
        helpers.other_redis_db(broker_url),
        isolated_database,
        EMBEDQ_SOFT_TIME_LIMIT="2",
        EMBEDQ_TIME_LIMIT="8",
        EMBEDQ_VISIBILITY_TIMEOUT="60",
        EMBEDQ_MAX_ATTEMPTS="10",
    )
    worker = helpers.start_worker(env, isolated_database, "time-limit@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        # Many short batches: each attempt caches what it encoded, the next one resumes after it.
        texts = helpers.unique_texts(600)
        job = eq.encode(texts, batch_size=8)
        info = job.wait(timeout=240)
        assert info.status == JobStatus.SUCCEEDED, (tmp_path / "worker.log").read_text()[-3000:]
        assert info.attempts > 1 and info.result is not None and info.result["cached"] > 0
        assert np.abs(job.result(timeout=1) - st_model.encode(texts, batch_size=8)).max() < 1e-5

        # One batch longer than the limit: no progress, so retrying cannot help.
        stuck = eq.encode([(f"{text} " * 20)[:1900] for text in helpers.unique_texts(1024)], batch_size=1024)
        info = stuck.wait(timeout=120)
        assert info.status == JobStatus.FAILED, (tmp_path / "worker.log").read_text()[-3000:]
        assert info.error is not None and info.error["type"] == "TimeLimitExceeded"
        assert info.attempts == 1 and info.progress[0] == 0
        assert eq.encode(["after the limit"]).result(timeout=60).shape == (1, 384)

        # The interactive consumer runs jobs in its own thread (the solo pool): the limit is ours to enforce.
        long_texts = [(f"{text} " * 20)[:1900] for text in helpers.unique_texts(120)]
        inline = eq.encode(long_texts, batch_size=120, lane="interactive")
        info = inline.wait(timeout=120)
        assert info.status == JobStatus.FAILED, (tmp_path / "worker.log").read_text()[-3000:]
        assert info.error is not None and info.error["type"] == "TimeLimitExceeded"
        assert info.queue == "embedq.cpu.interactive" and info.attempts == 1
        assert eq.encode(["after the limit"], lane="interactive").result(timeout=60).shape == (1, 384)
        assert worker.poll() is None  # the consumer lived on
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
    with psycopg.connect(isolated_database) as conn:
        assert conn.execute("SELECT count(*) FROM encode_outputs WHERE job_id = %s", (stuck.id,)).fetchone()[0] == 0
