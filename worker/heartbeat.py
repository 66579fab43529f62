"""Worker heartbeat and sweeper, run by a Celery consumer step in the worker's main process.

Every ``worker_heartbeat`` seconds the worker upserts its row in ``workers``
(hardware class, queues, concurrency); every ``sweep_interval`` seconds it
sweeps (see ``worker.sweeper``) unless ``EMBEDQ_SWEEPER=0``. The first
heartbeat is written once the consumer is consuming, which is what
``embedq up`` waits for.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from typing import Any

from celery import bootsteps

from api_client.db import connect
from api_client.settings import get_settings
from api_client.store import workers as workers_store
from worker.sweeper import sweep

log = logging.getLogger(__name__)


class Heartbeat(bootsteps.StartStopStep):
    """Starts the heartbeat thread when the consumer starts consuming."""

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
        concurrency = int(os.environ.get("EMBEDQ_CONCURRENCY", "1"))
        self._stop = threading.Event()  # each thread its own: a stuck old one cannot be revived
        self._thread = threading.Thread(
            target=self._run, args=(parent.app, queues, concurrency, self._stop), name="embedq-heartbeat", daemon=True
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

    def _run(self, app: Any, queues: list[str], concurrency: int, stop: threading.Event) -> None:
        settings = get_settings()
        sweeper = os.environ.get("EMBEDQ_SWEEPER", "1") != "0"
        hardware = os.environ.get("EMBEDQ_HARDWARE", "cpu")
        conn = None
        next_sweep = time.monotonic()
        while True:
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connect(settings.require_database(), application_name=f"embedq-heartbeat {self._name}")
                workers_store.beat(
                    conn=conn,
                    name=self._name,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    hardware=hardware,
                    queues=queues,
                    concurrency=concurrency,
                    started_at=self._started_at,
                )
                if sweeper and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + settings.sweep_interval
                    sweep(conn=conn, app=app, settings=settings)
            except Exception as exc:
                log.warning("heartbeat/sweep failed: %s", exc)
                conn = None
            wait = min(settings.worker_heartbeat, max(0.05, next_sweep - time.monotonic()))
            if stop.wait(wait if sweeper else settings.worker_heartbeat):
                break
        if conn is not None:
            conn.close()
