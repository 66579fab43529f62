"""Waiting for jobs with ``LISTEN``/``NOTIFY`` instead of polling.

One background thread per client holds a connection that listens on
``embedq_jobs`` and wakes the waiters of each job id it hears. When that
connection drops it reconnects and wakes every waiter, so each re-reads its
job's status and no notification can be missed for good.

It also listens on ``embedq_results``, where a worker announces a finished
job with its row and, for a small encode job, its raw vectors: the listener
keeps that ``Notice`` for a job someone waits on, so the waiter can skip
reading the job back (``notice``, ``take``).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import numpy as np
import psycopg

from api_client.db import connect
from api_client.schemas import JobInfo
from api_client.states import NOTIFY_CHANNEL
from api_client.store.jobs import RESULT_CHANNEL, info_from_json

log = logging.getLogger(__name__)

KEPT_NOTICES = 256
"""Notices kept for jobs not yet ``take``n; the oldest go first."""


@dataclass(frozen=True)
class Notice:
    """A finished job as its worker announced it: its row and, for a small encode job, its raw vectors."""

    info: JobInfo
    raw: np.ndarray | None
    """Raw float32 vectors ``[count, dim]`` in item order, or ``None`` when they were not sent."""


def parse_notice(payload: str) -> Notice:
    """A ``Notice`` from a ``RESULT_CHANNEL`` payload (``<job id> <JSON>``)."""
    fields = json.loads(payload.partition(" ")[2])
    raw = None
    if fields.get("vectors") is not None:
        values = np.frombuffer(base64.b64decode(fields["vectors"]), dtype="<f4")
        raw = values.astype(np.float32).reshape(-1, fields["dim"])
    return Notice(info_from_json(fields["info"]), raw)


class Notifier:
    """Dispatches job-finished notifications to ``threading.Event`` waiters."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._lock = threading.Lock()
        self._waiters: defaultdict[str, set[threading.Event]] = defaultdict(set)
        self._notices: OrderedDict[str, Notice] = OrderedDict()
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

    def notice(self, job_id: str) -> Notice | None:
        """The notice of ``job_id`` heard while someone waited on it, if any (kept until ``take``n)."""
        with self._lock:
            return self._notices.get(job_id)

    def take(self, job_id: str) -> Notice | None:
        """The notice of ``job_id``, forgotten here."""
        with self._lock:
            return self._notices.pop(job_id, None)

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

    def _announce(self, payload: str) -> None:
        """Keep the notice of a job that someone waits on, then wake its waiters."""
        job_id = payload.partition(" ")[0]
        with self._lock:
            if job_id not in self._waiters:
                return
        try:
            notice = parse_notice(payload)
        except (ValueError, KeyError, TypeError) as exc:  # its waiters read the job instead
            log.warning("unreadable notice of job %s: %s", job_id, exc)
        else:
            with self._lock:
                self._notices[job_id] = notice
                while len(self._notices) > KEPT_NOTICES:
                    self._notices.popitem(last=False)
        self._wake(job_id)

    def _run(self) -> None:
        backoff = 0.1
        while not self._closed.is_set():
            try:
                with connect(self._url, application_name="embedq-listener") as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}; LISTEN {RESULT_CHANNEL}")
                    self._listening.set()
                    self._wake(None)
                    backoff = 0.1
                    while not self._closed.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            if notify.channel == RESULT_CHANNEL:
                                self._announce(notify.payload)
                            else:
                                self._wake(notify.payload)
            except (psycopg.Error, OSError, Exception) as exc:  # keep the thread alive whatever happens
                self._listening.clear()
                self._wake(None)
                log.warning("embedq listener lost its connection (%s); reconnecting in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
