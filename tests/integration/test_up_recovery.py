"""One `embedq up` per data dir, and a clean restart after `embedq up` was killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from api_client.settings import read_env_file
from embedq.worker.embedded import is_live
from tests import helpers
from tests.integration.test_up import run_client, scratch_dir, start_up


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


def wait_serving(up: subprocess.Popen, data_dir: Path, log: Path) -> dict[str, str]:
    """The env file's values once ``up`` says it is up (the file may be a dead instance's until then)."""
    helpers.wait_until(lambda: "embedq is up" in log.read_text() or up.poll() is not None, timeout=240, what="up")
    assert up.poll() is None, log.read_text()[-3000:]
    return read_env_file(data_dir / "env")


def recorded(data_dir: Path) -> dict[str, psutil.Process]:
    """The processes `embedq up` recorded as started under ``data_dir``, by role."""
    records = json.loads((data_dir / "processes.json").read_text())
    return {role: psutil.Process(record["pid"]) for role, record in records.items()}


def kill_all(ups: list[subprocess.Popen], data_dir: Path, started: list[psutil.Process]) -> None:
    """Leave nothing running, whatever state a failed test stopped in."""
    for up in ups:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                up.wait(timeout=60)
            if up.poll() is None:
                up.kill()
                up.wait()
    for proc in started:
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()
    for proc in psutil.process_iter(attrs=("cmdline",)):
        if str(data_dir) in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


@pytest.mark.slow
def test_second_up_is_refused_and_a_killed_up_is_cleaned_up_by_the_next(tmp_path: Path, scratch: Path) -> None:
    data_dir = scratch / "stack"
    ups: list[subprocess.Popen] = []
    started: list[psutil.Process] = []
    try:
        first = start_up(data_dir, tmp_path / "first.log")
        ups.append(first)
        values = wait_serving(first, data_dir, tmp_path / "first.log")
        env_text = (data_dir / "env").read_text()

        second = start_up(data_dir, tmp_path / "second.log")
        ups.append(second)
        assert second.wait(timeout=120) != 0
        refusal = (tmp_path / "second.log").read_text()
        assert f"pid {first.pid}" in refusal and str(data_dir) in refusal, refusal
        assert (data_dir / "env").read_text() == env_text  # the first one's file, untouched

        orphans = recorded(data_dir)
        started += orphans.values()
        assert set(orphans) == {"valkey", "postgres", "worker"}
        first.kill()  # the up process alone: its servers and worker are left running
        first.wait()
        assert all(is_live(proc) for proc in orphans.values())
        assert (data_dir / "env").exists()  # stale: it names servers nobody will stop

        third = start_up(data_dir, tmp_path / "third.log")
        ups.append(third)
        assert wait_serving(third, data_dir, tmp_path / "third.log") == values  # same broker port, same socket
        assert [role for role, proc in orphans.items() if is_live(proc)] == []
        started += recorded(data_dir).values()
        assert run_client(data_dir / "env").startswith("(2, 384) ")

        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=120) == 0, (tmp_path / "third.log").read_text()[-3000:]
        assert not (data_dir / "env").exists()
        assert [proc.pid for proc in started if is_live(proc)] == []
        assert helpers.processes_mentioning(str(data_dir)) == []
    finally:
        kill_all(ups, data_dir, started)
