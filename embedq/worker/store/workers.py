"""Each worker process's row in ``workers``: written every few seconds while it consumes, removed when it stops."""

from __future__ import annotations

import datetime as dt

import psycopg


def record_presence(
    *,
    conn: psycopg.Connection,
    name: str,
    hostname: str,
    pid: int,
    hardware: str,
    queues: list[str],
    concurrency: int,
    started_at: dt.datetime,
    node: str | None = None,
    supervisor_pid: int | None = None,
    consumers: int = 1,
    lanes: list[str] | None = None,
    backend: str = "torch",
    devices: list[str] | None = None,
    threads: int = 0,
    pool_pids: list[int] | None = None,
    metrics_url: str | None = None,
) -> None:
    """Upsert the row of consumer ``name``; a restarted one of the same name replaces the old row's facts.

    ``node`` is the ``embedq worker`` it belongs to (default: ``name``), ``supervisor_pid`` that
    process's pid and ``consumers`` how many consumers it runs; ``pool_pids`` are the processes
    that claim jobs (as ``<name>/<pid>`` in ``jobs.worker``).
    """
    conn.execute(
        "INSERT INTO workers (name, hostname, pid, hardware, queues, concurrency, started_at, last_seen, "
        "node, supervisor_pid, consumers, lanes, backend, devices, threads, pool_pids, metrics_url) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET "
        "hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, hardware = EXCLUDED.hardware, "
        "queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, started_at = EXCLUDED.started_at, "
        "last_seen = now(), node = EXCLUDED.node, supervisor_pid = EXCLUDED.supervisor_pid, "
        "consumers = EXCLUDED.consumers, lanes = EXCLUDED.lanes, backend = EXCLUDED.backend, "
        "devices = EXCLUDED.devices, threads = EXCLUDED.threads, pool_pids = EXCLUDED.pool_pids, "
        "metrics_url = EXCLUDED.metrics_url",
        (
            name,
            hostname,
            pid,
            hardware,
            queues,
            concurrency,
            started_at,
            node or name,
            supervisor_pid,
            consumers,
            lanes if lanes is not None else [],
            backend,
            devices if devices is not None else [],
            threads,
            pool_pids if pool_pids is not None else [],
            metrics_url,
        ),
    )


def remove(*, conn: psycopg.Connection, name: str) -> None:
    conn.execute("DELETE FROM workers WHERE name = %s", (name,))
