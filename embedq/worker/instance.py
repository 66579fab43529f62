"""One ``embedq up`` per data dir, and the clean-up of what a killed one left running.

``DATA_DIR/lock`` is held with ``flock`` for the life of the ``embedq up`` process and holds its pid, so a
second instance is refused with the pid of the first. The kernel drops the lock when its holder dies, however
it dies. ``DATA_DIR/processes.json`` records each process the instance started (servers and worker) by pid and
start time; an instance that gets the lock stops those still running, since their owner is gone. The start
time guards against a pid the system has since given to an unrelated process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
from pathlib import Path

import psutil

log = logging.getLogger("embedq.up")

# How each kind of process is asked to stop, and how long it gets before SIGKILL. The worker goes first: it
# holds connections to both servers. SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for clients).
STOP_ORDER = (("worker", signal.SIGTERM, 20.0), ("valkey", signal.SIGTERM, 10.0), ("postgres", signal.SIGINT, 30.0))


class DataDirBusy(RuntimeError):
    """Another live ``embedq up`` holds the data dir."""


class Instance:
    """The lock on a data dir and the record of the processes started under it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.records = data_dir / "processes.json"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``DataDirBusy`` naming the holder's pid; then write this pid in it."""
        fd = os.open(self.data_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another embedq up (pid {holder}) is running on {self.data_dir}; stop it first "
                f"(Ctrl-C in its terminal, or kill -TERM {holder}), or pass another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def record(self, role: str, pid: int) -> None:
        """Remember ``pid`` (with its start time) as this instance's ``role`` process."""
        records = self._read()
        records[role] = {"pid": pid, "started": psutil.Process(pid).create_time()}
        tmp = self.records.with_suffix(".tmp")
        tmp.write_text(json.dumps(records))
        tmp.replace(self.records)

    def forget(self) -> None:
        """Called after a clean stop: nothing recorded is left running."""
        self.records.unlink(missing_ok=True)

    def stop_leftovers(self) -> list[int]:
        """Stop the recorded processes of a dead instance that still run; returns their pids."""
        records = self._read()
        stopped = []
        for role, sig, timeout in STOP_ORDER:
            proc = _same_process(records.get(role))
            if proc is None:
                continue
            log.warning(
                "stopping the %s (pid %d) left running by an embedq up that exited without stopping it",
                role,
                proc.pid,
            )
            _stop(proc, sig, timeout)
            stopped.append(proc.pid)
        self.forget()
        return stopped

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            records: dict[str, dict[str, float]] = json.loads(self.records.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return records


def _same_process(record: dict[str, float] | None) -> psutil.Process | None:
    """The live process of ``record``, or None if it exited (or its pid now belongs to another process)."""
    if not record:
        return None
    try:
        proc = psutil.Process(int(record["pid"]))
        same = abs(proc.create_time() - record["started"]) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return None
    return proc if same and proc.status() != psutil.STATUS_ZOMBIE else None


def _stop(proc: psutil.Process, sig: signal.Signals, timeout: float) -> None:
    """Send ``sig``; SIGKILL the process and its descendants if they have not exited after ``timeout``."""
    family = [proc]
    with contextlib.suppress(psutil.Error):
        family += proc.children(recursive=True)
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(sig)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for straggler in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            straggler.kill()
    psutil.wait_procs(alive, timeout=5)
