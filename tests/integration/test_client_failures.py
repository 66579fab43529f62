"""What a caller sees when a server is down: typed errors, never a raw driver exception."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from api_client import EmbedQ
from api_client.errors import DatabaseUnavailable
from api_client.settings import Settings
from tests import helpers

DOWN = "postgresql://nobody@127.0.0.1:1/nothing"


def test_a_database_that_is_down_raises_database_unavailable(broker_url: str) -> None:
    with EmbedQ(Settings(broker_url=broker_url, database_url=DOWN, connect_timeout=1)) as eq:
        with pytest.raises(DatabaseUnavailable):
            eq.encode(["hello"])
        with pytest.raises(DatabaseUnavailable):
            eq.job(str(uuid.uuid4()))


def test_the_command_line_says_so_without_a_traceback(broker_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "jobs"],
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
    assert out.stderr.startswith("embedq: DatabaseUnavailable: PostgreSQL: connection failed:"), out.stderr
    assert "127.0.0.1" in out.stderr and "port 1" in out.stderr
    assert "Traceback" not in out.stderr
