"""Time limits of a job that runs in its consumer's own thread (Celery's solo pool), where Celery enforces none.

The interactive consumer runs its jobs inline (the solo pool): no pipe to a
pool process, which saves milliseconds on every small job, and no Celery
time limits either. ``time_limits`` arms them itself: at the soft limit it
raises ``SoftTimeLimitExceeded`` in the job's thread (between two Python
bytecodes, so a forward pass in C finishes first), which ``handle`` maps to
the same failure or retry as under the prefork pool; at the hard limit, when
the job is still running (stuck in C code), the process exits: its lease
lapses, the sweeper re-sends the job, and the worker's supervisor stops the
worker, as for any consumer that dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from billiard.exceptions import SoftTimeLimitExceeded

log = logging.getLogger(__name__)

HARD_LIMIT_EXIT = 70
"""Exit status of a consumer whose job outlived its hard time limit."""


def _raise_in(thread_id: int, what: type[BaseException]) -> None:
    """Raise ``what`` in thread ``thread_id`` at its next bytecode."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(what))


def _hard_limit(job_id: str, hard: float) -> None:
    log.error("job %s ran past its hard time limit (%ss) in this consumer's own thread: exiting", job_id, hard)
    logging.shutdown()
    os._exit(HARD_LIMIT_EXIT)


@contextmanager
def time_limits(job_id: str, soft: float | None, hard: float | None) -> Iterator[None]:
    """Enforce ``soft`` and ``hard`` seconds on the block, run by the calling thread."""
    thread_id = threading.get_ident()
    timers = []
    if soft:
        timers.append(threading.Timer(soft, _raise_in, (thread_id, SoftTimeLimitExceeded)))
    if hard:
        timers.append(threading.Timer(hard, _hard_limit, (job_id, hard)))
    for timer in timers:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()
