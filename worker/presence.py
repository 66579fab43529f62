"""Worker presence and the sweeper, run by a Celery consumer step in the worker's main process.

Every ``worker_heartbeat`` seconds the worker upserts its row in ``workers``
(hardware class, queues, concurrency): its presence, which routing and the
sweeper read; every ``sweep_interval`` seconds it sweeps (see
``worker.sweeper``) unless ``EMBEDQ_SWEEPER=0``. The first row is written
once the consumer is consuming, which is what ``embedq up`` waits for. (A
job's own liveness is its lease: ``worker.lease``.)
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from typing import Any

import psycopg
from celery import bootsteps

from api_client.db import connect, reopen
from api_client.settings import Settings, get_settings
from worker.store import workers as workers_store
from worker.sweeper import sweep

log = logging.getLogger(__name__)


class Presence(bootsteps.StartStopStep):
    """Starts the presence-and-sweeper thread when the consumer starts consuming."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._name = ""
        self._started_at = dt.datetime.now(dt.UTC)

    def start(self, parent: Any) -> None:
        self._name = parent.hostname
        queues = sorted(queue.name for queue in parent.app.amqp.queues.consume_from.values())
        self._stop = threading.Event()  # each thread its own: a stuck old one cannot be revived
        self._thread = threading.Thread(
            target=self._run, args=(parent.app, queues, self._stop), name="embedq-presence", daemon=True
        )
        self._thread.start()

    def stop(self, _parent: Any) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        settings = get_settings()
        try:
            with connect(settings.require_database()) as conn:
                workers_store.remove(conn=conn, name=self._name)
        except Exception as exc:
            log.warning("could not remove worker row %s: %s", self._name, exc)

    def _run(self, app: Any, queues: list[str], stop: threading.Event) -> None:
        settings = get_settings()
        conn: psycopg.Connection | None = None
        next_sweep = time.monotonic()
        while True:
            try:
                conn = reopen(conn, settings.require_database(), application_name=f"embedq-presence {self._name}")
                self._record(conn, settings, queues)
                if settings.sweeper and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + settings.sweep_interval
                    sweep(conn=conn, app=app, settings=settings)
            except Exception as exc:
                log.warning("presence/sweep failed: %s", exc)
                conn = None
            wait = min(settings.worker_heartbeat, max(0.05, next_sweep - time.monotonic()))
            if stop.wait(wait if settings.sweeper else settings.worker_heartbeat):
                break
        if conn is not None:
            conn.close()

    def _record(self, conn: psycopg.Connection, settings: Settings, queues: list[str]) -> None:
        workers_store.record_presence(
            conn=conn,
            name=self._name,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            hardware=settings.hardware,
            queues=queues,
            concurrency=settings.concurrency,
            started_at=self._started_at,
        )
