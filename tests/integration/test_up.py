"""`embedq up`: the whole service from one command, stopped cleanly by SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from api_client.settings import read_env_file
from tests import helpers


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh folder for embedded servers, outside pytest's tmp root.

    The embedded PostgreSQL runs as its own user when started by root and must traverse the data dir's
    parents; pytest resets its tmp root to mode 0700 whenever another session starts.
    """
    path = Path(tempfile.mkdtemp(prefix="embedq-up-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


SMALL_GATE = {
    "EMBEDQ_GATE_PAIRS": "150",
    "EMBEDQ_GATE_PARAPHRASE_TEXTS": "300",
    "EMBEDQ_GATE_DOCUMENTS": "1000",
    "EMBEDQ_GATE_QUERIES": "60",
}
"""The first ``embedq up`` gates the model's backends: on a tenth of the gate's data, to keep the tests short."""


def up_env(**env: str) -> dict[str, str]:
    """A user's environment: no EMBEDQ_* settings but a small gate, and no XDG_RUNTIME_DIR (as under ssh or in a
    container)."""
    base = {key: value for key, value in helpers.env_without_embedq().items() if key != "XDG_RUNTIME_DIR"}
    return {**base, "HF_HUB_OFFLINE": "1", **SMALL_GATE, **env}


def start_up(data_dir: Path, log: Path, **env: str) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "embedq.worker.cli", "up", "--data-dir", str(data_dir), "--loglevel", "warning"],
            env=up_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_client(env_file: Path) -> str:
    client = subprocess.run(
        [
            sys.executable,
            "-c",
            "from api_client import EmbedQ\n"
            "eq = EmbedQ.from_env()\n"
            "job = eq.encode(['my card was charged twice', 'reset my password'])\n"
            "print(job.result(timeout=120).shape, job.info().result['backend'])",
        ],
        env={**helpers.env_without_embedq(), "HF_HUB_OFFLINE": "1", "EMBEDQ_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert client.returncode == 0, client.stderr
    return client.stdout.strip()


def check_watch_urls(values: dict[str, str], env_file: Path) -> None:
    """The env file names the stack's dashboard and its worker's metrics, which show the client's job."""
    with urllib.request.urlopen(values["EMBEDQ_DASHBOARD_URL"] + "api/snapshot", timeout=30) as response:
        snapshot = json.load(response)
    assert snapshot["jobs"] and snapshot["jobs"][0]["kind"] == "encode" and snapshot["fleet"]
    with urllib.request.urlopen(values["EMBEDQ_METRICS_URL"], timeout=30) as response:
        metrics = response.read().decode()
    assert 'embedq_jobs_total{kind="encode",lane="interactive",status="succeeded"}' in metrics
    assert "embedq_job_seconds_bucket" in metrics and "embedq_model_load_seconds_count" in metrics
    status = subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", "status", "--json"],
        env={**helpers.env_without_embedq(), "EMBEDQ_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    workers = json.loads(status.stdout)["database"]["workers"]
    assert workers and {worker["metrics_url"] for worker in workers} == {values["EMBEDQ_METRICS_URL"]}


def serve_one_client_then_stop(up: subprocess.Popen, data_dir: Path, log: Path) -> dict[str, str]:
    env_file = data_dir / "env"
    try:
        helpers.wait_until(lambda: env_file.exists() or up.poll() is not None, timeout=180, what="the env file")
        assert up.poll() is None, log.read_text()
        values = read_env_file(env_file)
        shape, backend = run_client(env_file).split(") ")
        assert shape == "(2, 384" and "embedq is up" in log.read_text()
        # The first start gated the model's backends and serves the promoted one; later starts reuse it.
        text = log.read_text()
        assert f"now serves {backend} to requests that name no backend" in text or "already promoted" in text
        assert "save_pretrained" not in text and "Exporting the model" not in text  # the libraries' advice
        check_watch_urls(values, env_file)
    finally:
        up.send_signal(signal.SIGTERM)
        status = up.wait(timeout=120)
    assert status == 0, log.read_text()[-3000:]
    assert not env_file.exists()
    assert helpers.processes_mentioning(f"embedq-up-{up.pid}@") == []
    return values


def test_up_with_embedded_servers(tmp_path: Path, scratch: Path) -> None:
    data_dir = scratch / "stack"
    log = tmp_path / "up.log"
    values = serve_one_client_then_stop(start_up(data_dir, log), data_dir, log)
    assert values["EMBEDQ_BROKER_URL"].startswith("redis://")
    assert values["EMBEDQ_DATABASE_URL"].startswith("postgresql://")
    assert (data_dir / "pg" / "PG_VERSION").exists() and (data_dir / "valkey").is_dir()
    assert helpers.processes_mentioning(str(data_dir)) == []
    assert "XDG_RUNTIME_DIR" not in log.read_text()


def test_up_with_given_servers_and_rabbitmq(tmp_path: Path, isolated_database: str) -> None:
    amqp_url = os.environ.get("EMBEDQ_TEST_AMQP_URL")
    if not amqp_url:
        pytest.skip("EMBEDQ_TEST_AMQP_URL is not set; .ci/run sets it to the machine's RabbitMQ")
    data_dir = tmp_path / "stack"
    up = start_up(data_dir, tmp_path / "up.log", EMBEDQ_BROKER_URL=amqp_url, EMBEDQ_DATABASE_URL=isolated_database)
    values = serve_one_client_then_stop(up, data_dir, tmp_path / "up.log")
    assert values["EMBEDQ_BROKER_URL"] == amqp_url and values["EMBEDQ_DATABASE_URL"] == isolated_database
    result_backend = "db+" + isolated_database.replace("postgresql://", "postgresql+psycopg://", 1)
    assert values["EMBEDQ_RESULT_BACKEND"] == result_backend
    assert not (data_dir / "pg").exists() and not (data_dir / "valkey").exists()


def test_up_refuses_a_database_without_pgvector(tmp_path: Path, broker_url: str) -> None:
    plain_url = os.environ.get("EMBEDQ_TEST_PLAIN_DATABASE_URL")
    if not plain_url:
        pytest.skip("EMBEDQ_TEST_PLAIN_DATABASE_URL (a PostgreSQL without pgvector) is not set; .ci/run sets it")
    log = tmp_path / "up.log"
    up = start_up(tmp_path / "stack", log, EMBEDQ_BROKER_URL=broker_url, EMBEDQ_DATABASE_URL=plain_url)
    assert up.wait(timeout=120) == 1
    assert "has no pgvector extension" in log.read_text()
    assert not (tmp_path / "stack" / "env").exists()
