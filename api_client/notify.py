"""Waiting for jobs with ``LISTEN``/``NOTIFY`` instead of polling.

One background thread per client holds a connection that listens on
``embedq_jobs`` and wakes the waiters of each job id it hears. When that
connection drops it reconnects and wakes every waiter, so each re-reads its
job's status and no notification can be missed for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import psycopg

from api_client.db import connect
from api_client.states import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Notifier:
    """Dispatches job-finished notifications to ``threading.Event`` waiters."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._lock = threading.Lock()
        self._waiters: defaultdict[str, set[threading.Event]] = defaultdict(set)
        self._listening = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening in the background (``register`` does it too, if needed)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="embedq-notifier", daemon=True)
                self._thread.start()

    def register(self, job_id: str, timeout: float = 10.0) -> threading.Event:
        """An event set when ``job_id`` may have changed; register before reading the job's status.

        Waits up to ``timeout`` seconds for the listener to be connected; a
        caller that goes on without it still re-reads its job every few seconds.
        """
        event = threading.Event()
        with self._lock:
            self._waiters[job_id].add(event)
        self.start()
        self._listening.wait(timeout)
        return event

    def unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _wake(self, job_id: str | None) -> None:
        with self._lock:
            events = (
                [event for waiters in self._waiters.values() for event in waiters]
                if job_id is None
                else list(self._waiters.get(job_id, ()))
            )
        for event in events:
            event.set()

    def _run(self) -> None:
        backoff = 0.1
        while not self._closed.is_set():
            try:
                with connect(self._url, application_name="embedq-listener") as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    self._wake(None)
                    backoff = 0.1
                    while not self._closed.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            self._wake(notify.payload)
            except (psycopg.Error, OSError, Exception) as exc:  # keep the thread alive whatever happens
                self._listening.clear()
                self._wake(None)
                log.warning("embedq listener lost its connection (%s); reconnecting in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
