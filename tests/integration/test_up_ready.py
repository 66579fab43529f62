"""`wait_ready` counts a worker as consuming only on a heartbeat it could still be alive by."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import uuid

import psycopg
import pytest

from api_client.settings import get_settings
from embedq.worker.stack import wait_ready
from embedq.worker.store import workers as workers_store


def test_wait_ready_takes_only_a_heartbeat_younger_than_worker_alive_from_that_worker(database_url: str) -> None:
    worker_alive = get_settings(env_file=False).worker_alive
    name = f"embedq-ready-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])

    def beat(pid: int, age: float) -> None:
        workers_store.record_presence(
            conn=conn, name=name, hostname=socket.gethostname(), pid=pid, hardware="cpu",
            queues=["celery"], concurrency=1, started_at=dt.datetime.now(dt.UTC),
        )  # fmt: skip
        conn.execute("UPDATE workers SET last_seen = now() - make_interval(secs => %s) WHERE name = %s", (age, name))

    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            beat(worker.pid, worker_alive + 5)  # older than worker_alive, younger than a minute
            with pytest.raises(RuntimeError, match="not consuming"):
                wait_ready(database_url, name, worker, timeout=1)
            beat(worker.pid + 1, 0)  # fresh, but another process's (an earlier worker of the same name)
            with pytest.raises(RuntimeError, match="not consuming"):
                wait_ready(database_url, name, worker, timeout=1)
            beat(worker.pid, 0)
            assert wait_ready(database_url, name, worker, timeout=5)
        finally:
            worker.kill()
            worker.wait()
            workers_store.remove(conn=conn, name=name)
