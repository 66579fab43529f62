"""Reading the ``workers`` table: who is alive, its hardware class and queues (``worker.store.workers`` writes it)."""

from __future__ import annotations

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
