"""The progress bar on stderr while `embedq encode` waits for its job."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from api_client.errors import JobTimeout

WIDTH = 30


def render(done: int, total: int, elapsed: float) -> str:
    """One line: bar, counts, percent, rate and remaining time."""
    fraction = done / total if total else 0.0
    filled = int(fraction * WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:,.0f}s left" if rate > 0 and done < total else ""
    return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {done:,}/{total:,} {fraction:4.0%} {rate:,.0f}/s {eta}"


def wait_with_progress(job: Any, *, timeout: float | None, show: bool, stream: TextIO = sys.stderr) -> None:
    """Wait for ``job`` to finish, redrawing the bar twice a second when ``show``."""
    if not show:
        job.wait(timeout)
        return
    start = time.monotonic()
    while True:
        remaining = None if timeout is None else timeout - (time.monotonic() - start)
        if remaining is not None and remaining <= 0:
            raise JobTimeout(f"job {job.id} did not finish within {timeout}s; it keeps running")
        try:
            info = job.wait(0.5 if remaining is None else min(0.5, remaining))
            finished = True
        except JobTimeout:
            info = job.info()
            finished = False
        stream.write("\r" + render(info.progress[0], info.progress[1], time.monotonic() - start).ljust(80))
        stream.flush()
        if finished:
            stream.write("\n")
            return
