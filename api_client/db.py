"""PostgreSQL connections for the client and the worker."""

from __future__ import annotations

import psycopg

from api_client.errors import DatabaseUnavailable

APPLICATION_NAME = "embedq"


def libpq_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def sqlalchemy_url(url: str) -> str:
    """A SQLAlchemy URL that uses the psycopg 3 driver."""
    scheme, sep, rest = libpq_url(url).partition("://")
    return f"postgresql+psycopg{sep}{rest}" if scheme in ("postgres", "postgresql") else url


def connect(url: str, *, application_name: str = APPLICATION_NAME) -> psycopg.Connection:
    """An autocommit connection; multi-statement work uses ``with conn.transaction()``."""
    try:
        return psycopg.connect(libpq_url(url), autocommit=True, application_name=application_name)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}".strip()) from exc


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
