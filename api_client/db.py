"""PostgreSQL connections for the client and the worker."""

from __future__ import annotations

import re

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


def public_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) masked: for logs and messages."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?]*):[^@/?]+@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)
