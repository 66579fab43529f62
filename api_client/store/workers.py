"""Reading the ``workers`` table: who is alive, what it consumes and runs (``embedq.worker.store.workers`` writes it).

A row is one consumer process; the consumers of one ``embedq worker`` share
its ``node`` name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

COLUMNS = (
    "name, hostname, pid, hardware, queues, concurrency, node, supervisor_pid, consumers, lanes, backend, "
    "devices, threads, pool_pids, extract(epoch FROM now() - last_seen)::float8, metrics_url"
)
ALIVE = "last_seen > now() - make_interval(secs => %(within)s)"


@dataclass(frozen=True)
class WorkerRow:
    name: str
    hostname: str
    pid: int
    hardware: str
    queues: list[str]
    concurrency: int
    node: str | None
    supervisor_pid: int | None
    consumers: int
    lanes: list[str]
    backend: str
    devices: list[str]
    threads: int
    pool_pids: list[int]
    seen_ago: float
    """Seconds since the last heartbeat, by the database's clock."""
    metrics_url: str | None = None
    """Where its ``embedq worker`` serves Prometheus metrics (schema 0009 on)."""
    running: list[str] = field(default_factory=list)
    """Ids of the running jobs its pool processes hold (filled by ``fleet`` only)."""


def alive(*, conn: psycopg.Connection, within: float) -> list[WorkerRow]:
    """Consumers seen in the last ``within`` seconds, by name."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM workers WHERE {ALIVE} ORDER BY name", {"within": within}).fetchall()
    return [WorkerRow(*row) for row in rows]


def fleet(*, conn: psycopg.Connection, within: float) -> list[WorkerRow]:
    """``alive`` with each consumer's running jobs (claimed by its pool processes, oldest first)."""
    rows = conn.execute(
        f"SELECT {COLUMNS}, coalesce(held.ids, '{{}}') FROM workers LEFT JOIN LATERAL ("
        "  SELECT array_agg(j.id::text ORDER BY j.started_at) AS ids FROM jobs j "
        "  WHERE j.status = 'running' "
        "  AND j.worker = ANY (SELECT workers.name || '/' || p FROM unnest(workers.pool_pids) AS p)"
        f") held ON true WHERE {ALIVE} ORDER BY node, name",
        {"within": within},
    ).fetchall()
    return [WorkerRow(*row) for row in rows]


def consumers_of(*, conn: psycopg.Connection, queue: str, within: float) -> list[str]:
    """Names of the live consumers of ``queue``."""
    rows = conn.execute(
        f"SELECT name FROM workers WHERE %(queue)s = ANY (queues) AND {ALIVE} ORDER BY name",
        {"queue": queue, "within": within},
    ).fetchall()
    return [row[0] for row in rows]


def consumed(*, conn: psycopg.Connection, within: float) -> set[str]:
    """Every queue some live consumer consumes."""
    rows = conn.execute(f"SELECT DISTINCT unnest(queues) FROM workers WHERE {ALIVE}", {"within": within}).fetchall()
    return {row[0] for row in rows}


def gpu_alive(*, conn: psycopg.Connection, within: float) -> bool:
    row = conn.execute(
        f"SELECT 1 FROM workers WHERE hardware = 'gpu' AND {ALIVE} LIMIT 1", {"within": within}
    ).fetchone()
    return row is not None
