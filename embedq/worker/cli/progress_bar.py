"""The progress bar on stderr while a command waits for its job: tqdm's, fed from the job's progress."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from api_client.errors import JobTimeout


def wait_with_progress(job: Any, *, timeout: float | None, show: bool, stream: TextIO = sys.stderr) -> None:
    """Wait for ``job`` to finish, moving the bar twice a second when ``show``."""
    if not show:
        job.wait(timeout)
        return
    start = time.monotonic()
    # disable=False: asked for on the command line, the bar shows even where TQDM_DISABLE quiets libraries' bars
    with tqdm(total=0, unit="item", file=stream, dynamic_ncols=True, leave=True, disable=False) as bar:
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
            done, total = info.progress
            bar.total = total
            bar.update(done - bar.n)
            if finished:
                return
