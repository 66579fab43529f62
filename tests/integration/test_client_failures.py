"""What a caller sees when a server is down: typed errors, never a raw driver exception."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from api_client import EmbedQ
from api_client.errors import BrokerUnavailable, DatabaseUnavailable
from api_client.settings import Settings
from tests import helpers

DOWN = "postgresql://nobody@127.0.0.1:1/nothing"


def test_a_client_of_a_stack_that_is_down_says_so_at_once(broker_url: str, database_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"^embedq is not running: PostgreSQL at postgresql://nobody@127"):
        EmbedQ(Settings(broker_url=broker_url, database_url=DOWN, connect_timeout=5))
    with pytest.raises(BrokerUnavailable, match=r"^embedq is not running: the broker at redis://127.0.0.1:1/0"):
        EmbedQ(Settings(broker_url="redis://127.0.0.1:1/0", database_url=database_url, connect_timeout=5))
    assert time.monotonic() - started < 4  # refused connections: no waiting out the timeout


def test_a_database_that_goes_down_raises_database_unavailable(broker_url: str) -> None:
    with EmbedQ(Settings(broker_url=broker_url, database_url=DOWN, connect_timeout=1), check=False) as eq:
        with pytest.raises(DatabaseUnavailable):
            eq.encode(["hello"])
        with pytest.raises(DatabaseUnavailable):
            eq.job(str(uuid.uuid4()))


def test_the_command_line_says_so_without_a_traceback(broker_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", "jobs"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **helpers.env_without_embedq(),
            "EMBEDQ_BROKER_URL": broker_url,
            "EMBEDQ_DATABASE_URL": DOWN,
            "EMBEDQ_CONNECT_TIMEOUT": "1",
        },
    )
    assert out.returncode == 1
    assert out.stderr.startswith("embedq: DatabaseUnavailable: embedq is not running: PostgreSQL at"), out.stderr
    assert "127.0.0.1" in out.stderr and "port 1" in out.stderr
    assert "Traceback" not in out.stderr


def test_pooled_connections_that_died_with_the_server_are_replaced(settings, session_worker, db) -> None:
    with EmbedQ(settings) as eq:
        job = eq.encode(helpers.unique_texts(2))
        job.result(timeout=60)
        # As after a PostgreSQL restart: every connection the client holds is gone.
        killed = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'embedq-client'"
        ).fetchone()[0]
        assert killed >= 1
        assert eq.job(job.id).result(timeout=60).shape == (2, 384)
        assert eq.encode(["after the restart"]).result(timeout=60).shape == (1, 384)
