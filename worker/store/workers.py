"""Each worker's row in ``workers``: written every few seconds while it consumes, removed when it stops."""

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
