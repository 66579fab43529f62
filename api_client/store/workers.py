"""The ``workers`` table: each worker's heartbeat, hardware class and queues."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class WorkerRow:
    name: str
    hostname: str
    pid: int
    hardware: str
    queues: list[str]
    concurrency: int


def beat(
    *,
    conn: psycopg.Connection,
    name: str,
    hostname: str,
    pid: int,
    hardware: str,
    queues: list[str],
    concurrency: int,
    started_at: dt.datetime,
) -> None:
    """Upsert the worker's row; a restarted worker of the same name replaces the old row's facts."""
    conn.execute(
        "INSERT INTO workers (name, hostname, pid, hardware, queues, concurrency, started_at, last_seen) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT (name) DO UPDATE SET "
        "hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, hardware = EXCLUDED.hardware, "
        "queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, started_at = EXCLUDED.started_at, "
        "last_seen = now()",
        (name, hostname, pid, hardware, queues, concurrency, started_at),
    )


def remove(*, conn: psycopg.Connection, name: str) -> None:
    conn.execute("DELETE FROM workers WHERE name = %s", (name,))


def alive(*, conn: psycopg.Connection, within: float) -> list[WorkerRow]:
    """Workers seen in the last ``within`` seconds."""
    rows = conn.execute(
        "SELECT name, hostname, pid, hardware, queues, concurrency FROM workers "
        "WHERE last_seen > now() - make_interval(secs => %s) ORDER BY name",
        (within,),
    ).fetchall()
    return [WorkerRow(*row) for row in rows]


def gpu_alive(*, conn: psycopg.Connection, within: float) -> bool:
    row = conn.execute(
        "SELECT 1 FROM workers WHERE hardware = 'gpu' AND last_seen > now() - make_interval(secs => %s) LIMIT 1",
        (within,),
    ).fetchone()
    return row is not None
