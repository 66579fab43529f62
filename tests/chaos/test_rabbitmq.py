"""RabbitMQ as the broker: the lifecycle of a mixed stream, a worker killed mid-job (SIGKILL of its whole process
group) and replaced, and the broker restarted under load with jobs submitted while it is down.

Each test runs on a RabbitMQ virtual host of its own (made with ``rabbitmqctl``
on the machine's RabbitMQ, which ``EMBEDQ_TEST_AMQP_URL`` names; .ci/run sets
it) and an isolated database; the ``jobs`` ledger is the judge.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

WAIT = 240

pytestmark = pytest.mark.slow  # `make chaos`; `make test` runs RabbitMQ's lifecycle in tests/integration/test_up.py


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def amqp_url() -> Iterator[str]:
    base = os.environ.get("EMBEDQ_TEST_AMQP_URL")
    if not base:
        pytest.skip("EMBEDQ_TEST_AMQP_URL is not set; .ci/run sets it to the machine's RabbitMQ")
    parts = urlsplit(base)
    vhost = f"embedq-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{vhost}", "", ""))
    finally:
        rabbitmqctl("delete_vhost", vhost)


def env_for(amqp_url: str, database: str, **extra: str) -> dict[str, str]:
    return helpers.worker_env(
        amqp_url, database, EMBEDQ_LEASE_SECONDS="3", EMBEDQ_SWEEP_INTERVAL="1", EMBEDQ_RESEND_AFTER="2", **extra
    )


def submit(eq: EmbedQ, tag: str) -> list:
    texts = helpers.unique_texts(1200, tag=tag)
    return [
        eq.encode(texts, batch_size=8),  # chunked: 1200 texts, chunk size 1000
        *(eq.encode(texts[i : i + 10]) for i in range(0, 100, 10)),
        eq.similarity(texts[:3], texts[3:40]),
        eq.paraphrases(texts[:60], threshold=0.5),
        eq.cluster(texts[:80], threshold=0.5, min_size=2),
    ]


def settle(jobs: list) -> int:
    """Every job succeeded; returns the extra executions (attempts past the first)."""
    infos = [job.wait(timeout=WAIT) for job in jobs]
    assert [i.status for i in infos] == [JobStatus.SUCCEEDED] * len(jobs), [
        (i.kind, i.status, i.error) for i in infos if i.status != JobStatus.SUCCEEDED
    ]
    return sum(i.attempts - 1 for i in infos)


def test_a_worker_killed_mid_job_on_rabbitmq_is_replaced_and_nothing_is_lost(
    amqp_url: str, isolated_database: str, tmp_path: Path, st_model
) -> None:
    env = env_for(amqp_url, isolated_database)
    log = tmp_path / "workers.log"
    first = helpers.start_worker(env, isolated_database, "rabbit-first@%h", log)
    eq = EmbedQ(get_settings(env, env_file=False))
    second = None
    try:
        jobs = submit(eq, "rabbit-kill")
        big = jobs[0]
        helpers.wait_until(lambda: big.progress[0] >= 200, timeout=WAIT, what="the chunked job to pass 200 texts")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = helpers.start_worker(env, isolated_database, "rabbit-second@%h", log)
        extra = settle(jobs)
        assert extra <= 3, extra  # the chunk, and at most the jobs that were running, ran twice
        vectors = big.result(timeout=10)
        assert vectors.shape == (1200, 384)
        texts = helpers.unique_texts(1200, tag="rabbit-kill")
        assert abs(vectors[-4:] - st_model.encode(texts[-4:], batch_size=8)).max() < 1e-5
        with eq._pool.connection() as conn:
            outputs = conn.execute("SELECT count(*), count(DISTINCT (job_id, item)) FROM encode_outputs").fetchone()
        assert outputs == (1300, 1300)  # 1200 + ten jobs of 10: none missing, none twice
        print(f"rabbitmq worker kill: {len(jobs)} jobs, extra executions {extra}, lost 0")
    finally:
        eq.close()
        if second is not None:
            stop_worker(second, timeout=30)


def test_a_rabbitmq_restart_under_load_loses_nothing_and_the_same_worker_resumes(
    amqp_url: str, isolated_database: str, tmp_path: Path
) -> None:
    env = env_for(amqp_url, isolated_database)
    worker = helpers.start_worker(env, isolated_database, "rabbit-restart@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        before = submit(eq, "rabbit-before")
        helpers.wait_until(lambda: before[1].status == JobStatus.SUCCEEDED, timeout=WAIT, what="a first job")
        rabbitmqctl("stop_app")  # every connection closed; durable queues and persistent messages kept
        try:
            started = time.monotonic()
            during = [eq.encode(helpers.unique_texts(5, tag=f"rabbit-down-{i}")) for i in range(3)]
            submit_seconds = time.monotonic() - started
        finally:
            rabbitmqctl("start_app")
        assert submit_seconds < 30, submit_seconds
        back = time.monotonic()
        extra = settle(before + during)
        recovery = time.monotonic() - back
        assert worker.poll() is None
        assert extra <= 3, extra
        settle([eq.encode(helpers.unique_texts(5, tag="rabbit-after"))])
        print(
            f"rabbitmq restart: {len(before) + len(during)} jobs, extra executions {extra}, lost 0, "
            f"submit while down {submit_seconds:.1f} s for 3 jobs, recovered in {recovery:.1f} s"
        )
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
