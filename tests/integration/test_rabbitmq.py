"""RabbitMQ as the broker (amqp://), when EMBEDQ_TEST_AMQP_URL names one (.ci/run does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api_client import EmbedQ
from api_client.settings import get_settings
from tests import helpers
from worker.stack import stop_worker


def test_jobs_run_over_rabbitmq(isolated_database: str, tmp_path: Path, st_model) -> None:
    amqp_url = os.environ.get("EMBEDQ_TEST_AMQP_URL")
    if not amqp_url:
        pytest.skip("EMBEDQ_TEST_AMQP_URL is not set; .ci/run sets it to the machine's RabbitMQ")
    env = helpers.worker_env(amqp_url, isolated_database)
    worker = helpers.start_worker(env, isolated_database, "rabbit@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        texts = helpers.unique_texts(10)
        vectors = eq.encode(texts, normalize=True).result(timeout=120)
        assert abs(vectors - st_model.encode(texts, normalize_embeddings=True)).max() < 1e-5
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
