"""The worker's connection helpers: reopening after a restart, and the checks of a server it serves from."""

from __future__ import annotations

import psycopg

from api_client.db import connect
from api_client.errors import DatabaseUnavailable


def reopen(conn: psycopg.Connection | None, url: str, *, application_name: str) -> psycopg.Connection:
    """``conn`` while it is usable, else a new autocommit connection (after a restart, a network cut)."""
    if conn is None or conn.closed or conn.broken:
        return connect(url, application_name=application_name)
    return conn


def has_pgvector(conn: psycopg.Connection) -> bool:
    """Whether the server can provide the ``vector`` extension."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    return row is not None


def require_schema(conn: psycopg.Connection) -> None:
    """Fail with the fix in the message when the database was never migrated."""
    row = conn.execute("SELECT to_regclass('jobs') IS NOT NULL AND to_regclass('embeddings') IS NOT NULL").fetchone()
    if not row or not row[0]:
        raise DatabaseUnavailable(
            "the database has no embedq tables: run `embedq migrate` (or start the stack with `embedq up`)"
        )
