"""Worker presence and the sweeper, run by a Celery consumer step in the worker's main process.

Every ``worker_heartbeat`` seconds the worker upserts its row in ``workers``
(hardware class, queues, lanes, backend, devices, threads, the pids of its
pool processes): its presence, which routing, the sweeper and ``embedq
fleet`` read; every ``sweep_interval`` seconds it sweeps (see
``embedq.worker.sweeper``) unless ``EMBEDQ_SWEEPER=0``. The first row is written
once the consumer is consuming, which is what ``embedq up`` waits for. (A
job's own liveness is its lease: ``embedq.worker.lease``.)
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

from api_client.db import connect
from api_client.settings import Settings, get_settings
from embedq.worker.db import reopen
from embedq.worker.layout import Consumer, current
from embedq.worker.metrics import metrics
from embedq.worker.store import status as status_store
from embedq.worker.store import workers as workers_store
from embedq.worker.sweeper import sweep

log = logging.getLogger(__name__)


class Presence(bootsteps.StartStopStep):
    """Starts the presence-and-sweeper thread when the consumer starts consuming."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._name = ""
        self._pool: Any = None
        self._started_at = dt.datetime.now(dt.UTC)
        self._depth_queues: set[str] = set()

    def start(self, parent: Any) -> None:
        self._name = parent.hostname
        queues = sorted(queue.name for queue in parent.app.amqp.queues.consume_from.values())
        self._stop = threading.Event()  # each thread its own: a stuck old one cannot be revived
        self._pool = parent.pool
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
                self._queue_depths(conn, queues)
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

    def _queue_depths(self, conn: psycopg.Connection, queues: list[str]) -> None:
        """Set ``embedq_queue_depth`` of every queue with jobs waiting (and back to 0 of those now empty)."""
        found = metrics()
        if found is None:
            return
        depths = status_store.queued_by_queue(conn=conn)
        for queue in {*queues, *depths, *self._depth_queues}:
            found.queue_depth.labels(queue).set(depths.get(queue, 0))
        self._depth_queues.update(depths)

    def _record(self, conn: psycopg.Connection, settings: Settings, queues: list[str]) -> None:
        spec = current() or _spec_from(self._name, settings, queues)
        workers_store.record_presence(
            conn=conn,
            name=self._name,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            hardware=settings.hardware,
            queues=queues,
            concurrency=settings.concurrency,
            started_at=self._started_at,
            node=spec.node,
            supervisor_pid=os.getppid() if current() is not None else None,
            consumers=spec.consumers,
            lanes=list(spec.lanes),
            backend=settings.backend,
            devices=[spec.device],
            threads=spec.threads,
            pool_pids=pool_pids(self._pool),
            metrics_url=os.environ.get("EMBEDQ_METRICS_URL") or None,
        )


def pool_pids(pool: Any) -> list[int]:
    """The pids of a Celery pool's processes (empty for a pool without processes of its own)."""
    try:
        return [int(pid) for pid in pool.info.get("processes", [])]
    except Exception:  # a pool that is starting or stopping, or not a prefork one
        return []


def _spec_from(name: str, settings: Settings, queues: list[str]) -> Consumer:
    """What a worker started without ``embedq worker`` (``celery -A embedq.worker.app worker``) publishes."""
    lanes = tuple(queue.rsplit(".", 1)[1] for queue in queues if queue.startswith("embedq."))
    return Consumer(
        name=name,
        node=name,
        lanes=lanes,
        queues=tuple(queues),
        concurrency=settings.concurrency,
        threads=settings.torch_threads,
        hardware=settings.hardware,
        device=(os.environ.get("CUDA_VISIBLE_DEVICES") or "cuda") if settings.hardware == "gpu" else "cpu",
    )
