"""``embedq worker``'s own process: it starts the planned consumers and stops them together.

CPU consumers (``embedq.worker.layout.Consumer``) are forked from this process once
it has imported the worker's code, so a second consumer costs no second
import of torch and the libraries (several seconds of CPU on a small
machine) and shares their pages; nothing here touches CUDA or opens a
connection before the fork. GPU consumers are fresh interpreters
(``python -m embedq.worker.consumer``) started with ``CUDA_VISIBLE_DEVICES`` set, so
no CUDA state of any library import can cross into them. Either way each
starts with its spec's environment (threads, device, settings) and stays in
this process's group, so a signal to the group reaches them all.

The first SIGTERM or SIGINT is passed on as SIGTERM (Celery's warm shutdown:
running jobs finish); a second one as SIGQUIT (cold shutdown: running jobs
stop, and are redelivered, since messages are acknowledged late). When a
consumer exits without being asked, the others are stopped too and the
worker exits with status 1: the whole worker is up or none of it, which is
what ``embedq up`` and process managers watch for.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from embedq.worker.layout import Consumer

log = logging.getLogger("embedq.worker")

POLL = 0.2
"""Seconds between two looks at the consumers."""

LIBRARY_POOLS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def command(consumer: Consumer, *, loglevel: str, supervisor: int) -> list[str]:
    """The command line that runs ``consumer``."""
    return [
        sys.executable,
        "-P",  # the caller's working folder never shadows our packages
        "-m",
        "embedq.worker.consumer",
        "--loglevel",
        loglevel,
        "--supervisor",
        str(supervisor),
        consumer.to_json(),
    ]


class Forked:
    """A forked consumer, watched like a ``subprocess.Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def fork(consumer: Consumer, *, loglevel: str) -> Forked:
    """Run ``consumer`` in a child of this process (which imports the worker's code first, to share it)."""
    import embedq.worker.app
    import embedq.worker.tasks  # noqa: F401
    from embedq.worker import consumer as entry

    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Forked(pid)
    status = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        logging.getLogger().handlers.clear()  # Celery sets up the consumer's logging, as in a fresh process
        entry.run(consumer, loglevel=loglevel, supervisor=parent)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def spawn(consumer: Consumer, *, loglevel: str, **popen: Any) -> subprocess.Popen[Any]:
    """Start ``consumer`` as a fresh interpreter with its environment added to this process's."""
    argv = command(consumer, loglevel=loglevel, supervisor=os.getpid())
    return subprocess.Popen(argv, env={**os.environ, **consumer.env}, **popen)


def start(consumer: Consumer, *, loglevel: str) -> Forked | subprocess.Popen[Any]:
    """A GPU consumer is spawned, a CPU one forked (module docstring)."""
    if consumer.hardware == "gpu":
        return spawn(consumer, loglevel=loglevel)
    return fork(consumer, loglevel=loglevel)


def _signal_all(procs: Sequence[Forked | subprocess.Popen[Any]], sig: signal.Signals) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)


def _size_library_pools(consumers: Sequence[Consumer]) -> None:
    """Size the thread pools libraries create when they load (OpenBLAS, MKL, OpenMP) for the forked consumers.

    They load here, before the fork, so the consumers' own variables come too late for them: the largest
    CPU consumer's thread count bounds them instead (unless the environment already sets them).
    """
    threads = max((c.threads for c in consumers if c.hardware == "cpu"), default=0)
    if threads:
        for variable in LIBRARY_POOLS:
            os.environ.setdefault(variable, str(threads))


def supervise(consumers: Sequence[Consumer], *, loglevel: str) -> int:
    """Run ``consumers`` until they stop; returns the worker's exit status."""
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)

    _size_library_pools(consumers)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs: list[Forked | subprocess.Popen[Any]] = []
    status = 0
    try:
        for consumer in consumers:
            procs.append(start(consumer, loglevel=loglevel))
            log.info(
                "consumer %s (pid %d): queues %s, %d process(es) of %d thread(s), device %s%s",
                consumer.name,
                procs[-1].pid,
                ",".join(consumer.queues),
                consumer.concurrency,
                consumer.threads,
                consumer.device,
                f", nice {consumer.nice}" if consumer.nice else "",
            )
        forwarded = 0
        while any(proc.poll() is None for proc in procs):
            if len(received) > forwarded:
                forwarded = len(received)
                _signal_all(procs, signal.SIGTERM if forwarded == 1 else signal.SIGQUIT)
            elif not received and (gone := [p for p in procs if p.poll() is not None]):
                log.error("consumer pid %d exited with status %s: stopping the others", gone[0].pid, gone[0].returncode)
                status = 1
                received.append(signal.SIGTERM)
            time.sleep(POLL)
    finally:
        _signal_all(procs, signal.SIGQUIT)  # only if this loop itself failed: none is left running
        for proc in procs:
            proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status == 0 and any(proc.returncode not in (0, -signal.SIGTERM) for proc in procs):
        status = 1
    return status
