"""Flower against the stack: `embedq up --flower` runs it with task events on; its task list shows our jobs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_client import EmbedQ
from api_client.settings import get_settings
from tests import helpers
from tests.integration.test_up import read_env_file, scratch_dir, up_env


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_flower_lists_a_job_that_ran(tmp_path: Path, scratch: Path) -> None:
    data_dir, log, port = scratch / "stack", tmp_path / "up.log", free_port()
    command = [sys.executable, "-m", "embedq.worker.cli", "up", "--data-dir", str(data_dir), "--loglevel", "warning"]
    command += ["--flower", "--flower-port", str(port), "--dashboard-port", "-1"]
    with log.open("wb") as out:
        up = subprocess.Popen(command, env=up_env(EMBEDQ_BACKEND="torch"), stdout=out, stderr=subprocess.STDOUT)
    env_file = data_dir / "env"
    try:
        helpers.wait_until(lambda: env_file.exists() or up.poll() is not None, timeout=180, what="the env file")
        assert up.poll() is None, log.read_text()[-3000:]
        values = read_env_file(env_file)
        assert values["EMBEDQ_FLOWER_URL"] == f"http://127.0.0.1:{port}/"
        with EmbedQ(get_settings(values, env_file=False)) as eq:
            job = eq.encode(["seen by flower"])
            job.result(timeout=60)

        def listed() -> dict | None:
            with urllib.request.urlopen(values["EMBEDQ_FLOWER_URL"] + "api/tasks", timeout=10) as response:
                tasks = json.load(response)
            task = tasks.get(job.id)
            return task if task and task["state"] == "SUCCESS" else None

        task = helpers.wait_until(listed, timeout=30, what="the job in Flower's task list")
        assert task["name"] == "embedq.encode" and "job_id" in task["kwargs"]
        assert (data_dir / "flower.log").exists() and "Registered tasks" not in log.read_text()
    finally:
        up.send_signal(signal.SIGTERM)
        status = up.wait(timeout=120)
    assert status == 0, log.read_text()[-3000:]
    assert helpers.processes_mentioning(f"--port={port}") == []  # Flower stopped with the stack
