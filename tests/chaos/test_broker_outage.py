"""The broker killed (SIGKILL, its messages gone) or restarted under load: the same worker resumes, and no job is
lost; a job submitted while the broker is down is recorded in PostgreSQL at once and runs once it is back.

Each test runs a Redis of its own (no persistence, so a kill loses every
message) with a worker of its own on an isolated database; the ``jobs``
ledger is the judge.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

WAIT = 180


class Redis:
    """A redis-server of this test's own, on a free port, stopped and started at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        helpers.wait_until(self._answers, timeout=20, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


def outage_stack(redis: Redis, database: str, log: Path):
    env = helpers.worker_env(
        redis.url,
        database,
        EMBEDQ_SWEEP_INTERVAL="1",
        EMBEDQ_RESEND_AFTER="2",
        EMBEDQ_LEASE_SECONDS="3",
    )
    worker = helpers.start_worker(env, database, "broker-outage@%h", log)
    return worker, EmbedQ(get_settings(env, env_file=False))


def submit_mixed(eq: EmbedQ, tag: str, n: int) -> list:
    jobs = []
    for i in range(n):
        texts = helpers.unique_texts(40, tag=f"{tag}-{i}")
        if i % 3 == 2:
            jobs.append(eq.similarity(texts[:5], texts[5:20]))
        elif i % 3 == 1:
            jobs.append(eq.paraphrases(texts[:30], threshold=0.5))
        else:
            jobs.append(eq.encode(texts))
    return jobs


def settle(eq: EmbedQ, jobs: list) -> dict[str, int]:
    infos = [job.wait(timeout=WAIT) for job in jobs]
    statuses = [info.status for info in infos]
    assert statuses == [JobStatus.SUCCEEDED] * len(jobs), [(i.kind, i.status, i.error) for i in infos]
    return {"jobs": len(infos), "extra_executions": sum(info.attempts - 1 for info in infos)}


@pytest.mark.parametrize(
    "sig",
    [pytest.param(signal.SIGKILL, id="killed"), pytest.param(signal.SIGTERM, id="restarted", marks=pytest.mark.slow)],
)
def test_the_same_worker_resumes_and_no_job_is_lost_when_the_broker_goes_away(
    redis: Redis, isolated_database: str, tmp_path: Path, sig: int
) -> None:
    log = tmp_path / "worker.log"
    worker, eq = outage_stack(redis, isolated_database, log)
    try:
        before = submit_mixed(eq, "before", 30)
        helpers.wait_until(lambda: any(job.status == JobStatus.SUCCEEDED for job in before), timeout=WAIT, what="work")
        redis.stop(sig)  # queued messages are gone with it (no persistence)

        started = time.monotonic()
        during = submit_mixed(eq, "during", 3)  # recorded in PostgreSQL; their messages cannot be sent yet
        submit_seconds = time.monotonic() - started
        assert submit_seconds < 30, f"submitting while the broker is down took {submit_seconds:.1f} s"
        assert all(job.status in (JobStatus.QUEUED, JobStatus.RUNNING) for job in during)

        time.sleep(2)
        redis.start()  # empty: the sweeper re-sends what was lost
        back = time.monotonic()
        figures = settle(eq, before + during)
        figures["recovery_seconds"] = round(time.monotonic() - back, 1)
        with eq._pool.connection() as conn:
            figures["jobs_resent"] = conn.execute("SELECT count(*) FROM jobs WHERE sends > 1").fetchone()[0]
        assert figures["jobs_resent"] > 0  # messages were lost with the broker, and found again
        assert worker.poll() is None, "the worker exited instead of reconnecting"
        assert figures["extra_executions"] <= len(before) // 2, figures
        after = submit_mixed(eq, "after", 3)
        settle(eq, after)
        print(f"broker {signal.Signals(sig).name}: {figures}, submit while down {submit_seconds:.2f} s for 3 jobs")
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
