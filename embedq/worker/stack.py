"""``embedq up``: the whole service on one machine.

It locks the data dir (one instance per data dir) and stops what a killed
instance left running there (``embedq/worker/instance.py``). With no
``EMBEDQ_BROKER_URL`` / ``EMBEDQ_DATABASE_URL`` it starts an embedded Valkey
and an embedded PostgreSQL with pgvector under the data dir
(``embedq/worker/embedded.py``); with them set it uses those servers. Then it
migrates, starts a worker (``embedq worker``: a consumer process per lane,
``embedq/worker/layout.py``), writes ``DATA_DIR/env`` once all its consumers are
consuming, and on SIGINT/SIGTERM stops everything in reverse order and
removes the env file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from api_client.db import connect, public_url, sqlalchemy_url
from api_client.settings import get_settings
from api_client.store import workers as workers_store
from embedq.worker import logs
from embedq.worker.db import has_pgvector
from embedq.worker.embedded import start_postgres, start_valkey
from embedq.worker.instance import Instance

log = logging.getLogger("embedq.up")

DASHBOARD_PORT = 8765
"""Where `embedq up` serves its dashboard (a free port when that one is taken)."""

WORKER_READY_TIMEOUT = 180.0


def _write_env(path: Path, values: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    tmp.chmod(0o600)
    tmp.replace(path)


def spawn_worker(
    *,
    env: dict[str, str],
    name: str,
    concurrency: int = 1,
    loglevel: str = "info",
    preload: str | None = None,
    extra: list[str] | None = None,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """Start ``embedq worker`` in its own process group with ``env`` added to this environment."""
    command = [
        sys.executable,
        "-P",  # the caller's working folder never shadows our packages
        "-m",
        "embedq.worker.cli",
        "worker",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--name",
        name,
        *(extra or []),
    ]
    if preload:
        command += ["--preload", preload]
    return subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True, **popen)


def wait_ready(
    database_url: str,
    name: str,
    worker: subprocess.Popen[Any],
    *,
    stopping: threading.Event | None = None,
    timeout: float = WORKER_READY_TIMEOUT,
    alive_within: float | None = None,
) -> bool:
    """Wait until worker ``name`` (``%h`` expanded) heartbeats, i.e. consumes; False if ``stopping`` was set.

    A heartbeat counts when it is at most ``alive_within`` seconds old (default: the ``worker_alive``
    setting) and comes from ``worker``'s consumers (``consuming``), so the rows of an earlier worker of
    the same name never do.
    """
    name = name.replace("%h", socket.gethostname())
    within = alive_within if alive_within is not None else get_settings(env_file=False).worker_alive
    deadline = time.monotonic() + timeout
    with connect(database_url) as conn:
        while stopping is None or not stopping.is_set():
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with status {worker.returncode} before it was ready")
            if consuming(workers_store.alive(conn=conn, within=within), name, worker.pid):
                return True
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker was not consuming after {timeout:.0f}s")
            time.sleep(0.1)
    return False


def consuming(rows: list[workers_store.WorkerRow], name: str, pid: int) -> bool:
    """Whether the worker ``name`` started as process ``pid`` consumes, by its live rows ``rows``.

    An ``embedq worker`` consumes once every consumer it started heartbeats (rows of node ``name``
    whose supervisor is ``pid``); a worker that is one Celery process, once its own row does.
    """
    mine = [row for row in rows if row.node == name and row.supervisor_pid == pid]
    if mine and len(mine) >= max(row.consumers for row in mine):
        return True
    return any(row.name == name and row.pid == pid for row in rows)


def stop_worker(worker: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    """SIGTERM (warm shutdown: the running job finishes), then SIGKILL to the group after ``timeout``."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _snippet(env_path: Path, watch: dict[str, str]) -> str:
    lines = [
        "embedq is up. Connect from any process:",
        f"    export EMBEDQ_ENV_FILE={env_path}",
        "    python -c 'from api_client import EmbedQ; "
        'print(EmbedQ.from_env().encode(["hello"]).result(timeout=60).shape)\'',
        "or: echo hello | embedq encode > vectors.npy",
    ]
    if "EMBEDQ_DASHBOARD_URL" in watch:
        lines.append(f"Dashboard: {watch['EMBEDQ_DASHBOARD_URL']}")
    if "EMBEDQ_METRICS_URL" in watch:
        lines.append(f"Prometheus metrics: {watch['EMBEDQ_METRICS_URL']}")
    if "EMBEDQ_FLOWER_URL" in watch:
        lines.append(f"Flower: {watch['EMBEDQ_FLOWER_URL']}")
    lines.append("Ctrl-C stops the worker and the servers.")
    return "\n".join(lines)


def up(
    *,
    data_dir: Path,
    concurrency: int,
    loglevel: str,
    preload: str | None,
    backend: str | None = None,
    dashboard_port: int | None = DASHBOARD_PORT,
    flower_port: int | None = None,
) -> int:
    """Run the stack until SIGINT/SIGTERM; returns the exit status.

    Raises ``DataDirBusy`` (a ``RuntimeError``) when another live ``embedq up`` holds ``data_dir``.
    """
    logs.quiet_libraries()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    instance = Instance(data_dir)
    instance.acquire()
    try:
        instance.stop_leftovers()
        extra = ["--backend", backend] if backend else []
        return _serve(
            instance,
            concurrency=concurrency,
            loglevel=loglevel,
            preload=preload,
            extra=extra,
            dashboard_port=dashboard_port,
            flower_port=flower_port,
        )
    finally:
        instance.release()


def start_flower(env: dict[str, str], port: int, stack: ExitStack, log: Path) -> str:
    """Flower on the stack's broker (the workers send task events), logging to ``log``, stopped with the stack;
    its URL."""
    command = [
        sys.executable,
        "-P",
        "-m",
        "celery",
        "-A",
        "embedq.worker.app",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    # Its HTTP API (what scripts and the tests read) answers without a login: it listens on 127.0.0.1 only.
    flower_env = {**os.environ, **env, "FLOWER_UNAUTHENTICATED_API": "true"}
    output = stack.enter_context(log.open("ab"))
    flower = subprocess.Popen(command, env=flower_env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
    stack.callback(stop_worker, flower, 20.0)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if flower.poll() is not None:
            raise RuntimeError(f"Flower exited with status {flower.returncode} before it answered")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return url
        time.sleep(0.2)
    raise RuntimeError(f"Flower did not answer on port {port} within 60 s")


def _watch(
    stack: ExitStack, env: dict[str, str], name: str, dashboard_port: int | None, flower_port: int | None = None
) -> dict[str, str]:
    """The URLs to watch the stack by: its worker's metrics, a dashboard served from this process, Flower if
    asked for, and the result backend plain Celery clients read outcomes from."""
    from embedq.worker.dashboard import start

    urls: dict[str, str] = {"EMBEDQ_RESULT_BACKEND": f"db+{sqlalchemy_url(env['EMBEDQ_DATABASE_URL'])}"}
    node = name.replace("%h", socket.gethostname())
    with connect(env["EMBEDQ_DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT metrics_url FROM workers WHERE node = %s AND metrics_url IS NOT NULL LIMIT 1", (node,)
        ).fetchone()
    if row is not None:
        urls["EMBEDQ_METRICS_URL"] = row[0]
    if dashboard_port is not None and dashboard_port >= 0:
        settings = get_settings(env, env_file=False)
        try:
            server = start(settings, port=dashboard_port)
        except OSError as exc:  # the port is taken (another stack's dashboard, say): any free one instead
            log.warning("dashboard port %s: %s; using a free port", dashboard_port, exc)
            server = start(settings, port=0)
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        urls["EMBEDQ_DASHBOARD_URL"] = server.url
    if flower_port is not None:
        urls["EMBEDQ_FLOWER_URL"] = start_flower(env, flower_port, stack, Path(env["EMBEDQ_DATA_DIR"]) / "flower.log")
    return urls


def _serve(
    instance: Instance,
    *,
    concurrency: int,
    loglevel: str,
    preload: str | None,
    extra: list[str],
    dashboard_port: int | None = None,
    flower_port: int | None = None,
) -> int:
    data_dir = instance.data_dir
    env_path = data_dir / "env"
    env_path.unlink(missing_ok=True)
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = get_settings(env_file=False)
    with ExitStack() as stack:
        stack.callback(instance.forget)  # runs last: every process it names has stopped by then
        stack.callback(env_path.unlink, missing_ok=True)
        broker_url = settings.broker_url or start_valkey(data_dir, stack, on_pid=instance.record)
        database_url = settings.database_url or start_postgres(data_dir, stack, on_pid=instance.record)
        log.info("broker %s, database %s", public_url(broker_url), public_url(database_url))
        _require_pgvector(database_url)
        from embedq import migrations

        migrations.upgrade(database_url)
        env = {"EMBEDQ_BROKER_URL": broker_url, "EMBEDQ_DATABASE_URL": database_url}
        _gate(env, data_dir, preload, extra)
        name = f"embedq-up-{os.getpid()}@%h"
        events = {"EMBEDQ_TASK_EVENTS": "1"} if flower_port is not None else {}
        worker = spawn_worker(
            env={**env, **events, "EMBEDQ_DATA_DIR": str(data_dir)},
            name=name,
            concurrency=concurrency,
            loglevel=loglevel,
            preload=preload,
            extra=extra,
        )
        instance.record("worker", worker.pid)
        stack.callback(stop_worker, worker)
        wait_ready(database_url, name, worker, stopping=stopping, alive_within=settings.worker_alive)
        if not stopping.is_set():
            watch = _watch(stack, {**env, "EMBEDQ_DATA_DIR": str(data_dir)}, name, dashboard_port, flower_port)
            _write_env(env_path, {**env, **watch})
            print(_snippet(env_path, watch), flush=True)
        while not stopping.is_set():
            if worker.poll() is not None:
                log.error("the worker exited with status %s", worker.returncode)
                return 1
            stopping.wait(0.5)
        print("embedq: stopping", file=sys.stderr, flush=True)
    return 0


def _gate(env: dict[str, str], data_dir: Path, preload: str | None, extra: list[str]) -> None:
    """Before the worker starts: the model it preloads gets its fleet-wide backend (gated once per version)."""
    from api_client.schemas import DEFAULT_MODEL
    from embedq.worker.cli.gating import ensure_served

    backend = extra[extra.index("--backend") + 1] if "--backend" in extra else get_settings(env_file=False).backend
    if backend != "torch":
        print("embedq: choosing the model's backend (the quality gate runs once per model version)", flush=True)
    ensure_served(preload or DEFAULT_MODEL, backend, by="embedq up", env={**env, "EMBEDQ_DATA_DIR": str(data_dir)})


def _require_pgvector(database_url: str) -> None:
    with connect(database_url) as conn:
        if not has_pgvector(conn):
            raise RuntimeError(
                f"PostgreSQL at {database_url} has no pgvector extension: install pgvector there, or unset "
                "EMBEDQ_DATABASE_URL to use the embedded PostgreSQL"
            )
