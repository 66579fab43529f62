"""Read-only queries for ``embedq status`` and ``embedq models list``: schema, workers, jobs, models.

Each works on a database at any migration (a missing table or column reads as
absent), so a health check can report what is wrong instead of failing on it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import psycopg

DEFAULT_BACKEND = "torch"
"""What a model row without a ``backend`` column runs on."""


@dataclass(frozen=True)
class LiveWorker:
    name: str
    hardware: str
    queues: list[str]
    concurrency: int
    last_seen: dt.datetime
    seen_ago: float
    """Seconds since the last heartbeat, by the database's clock."""
    node: str | None = None
    """The ``embedq worker`` this consumer process belongs to (schema 0005 on)."""
    lanes: list[str] = field(default_factory=list)
    backend: str | None = None
    devices: list[str] = field(default_factory=list)
    metrics_url: str | None = None
    """Where its ``embedq worker`` serves Prometheus metrics (schema 0009 on)."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    dtype: str
    backend: str
    dimension: int | None
    source: str | None
    path: str


def _has_table(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def _has_column(conn: psycopg.Connection, table: str, column: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s AND column_name = %s)",
        (table, column),
    ).fetchone()
    return bool(row and row[0])


def schema_revisions(*, conn: psycopg.Connection) -> list[str]:
    """The Alembic revisions the database is at (empty when it was never migrated)."""
    if not _has_table(conn, "alembic_version"):
        return []
    return sorted(row[0] for row in conn.execute("SELECT version_num FROM alembic_version").fetchall())


def pgvector_version(*, conn: psycopg.Connection) -> str | None:
    """The version of the ``vector`` extension installed in this database, if it is."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return str(row[0]) if row else None


def live_workers(*, conn: psycopg.Connection, within: float) -> list[LiveWorker]:
    """Workers whose heartbeat is newer than ``within`` seconds, by name."""
    if not _has_table(conn, "workers"):
        return []
    fleet = ", node, lanes, backend, devices" if _has_column(conn, "workers", "lanes") else ""
    if fleet and _has_column(conn, "workers", "metrics_url"):
        fleet += ", metrics_url"
    rows = conn.execute(
        "SELECT name, hardware, queues, concurrency, last_seen, extract(epoch FROM now() - last_seen)::float8"
        f"{fleet} FROM workers WHERE last_seen > now() - make_interval(secs => %s) ORDER BY name",
        (within,),
    ).fetchall()
    return [LiveWorker(*row) for row in rows]


def jobs_by_status(*, conn: psycopg.Connection) -> dict[str, int]:
    """How many jobs are in each status (statuses with none are left out)."""
    if not _has_table(conn, "jobs"):
        return {}
    rows = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def queued_by_queue(*, conn: psycopg.Connection) -> dict[str, int]:
    """How many jobs wait in each queue (queues with none are left out)."""
    if not _has_table(conn, "jobs"):
        return {}
    rows = conn.execute("SELECT queue, count(*) FROM jobs WHERE status = 'queued' GROUP BY queue ORDER BY queue")
    return {str(queue): int(count) for queue, count in rows.fetchall()}


def model_versions(*, conn: psycopg.Connection) -> list[ModelVersion]:
    """Every recorded model version: by name, then the last registered first, then the newest."""
    if not _has_table(conn, "models"):
        return []
    backend = "backend" if _has_column(conn, "models", "backend") else "NULL"
    rows = conn.execute(
        f"SELECT name, version, dtype, {backend}, dimension, config->>'source', artifact_path FROM models "
        "ORDER BY name, registered_at DESC NULLS LAST, created_at DESC, id DESC"
    ).fetchall()
    return [
        ModelVersion(name, version, dtype, backend or DEFAULT_BACKEND, dimension, source, path)
        for name, version, dtype, backend, dimension, source, path in rows
    ]
