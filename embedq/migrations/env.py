"""Alembic environment: runs migrations against EMBEDQ_DATABASE_URL (or the URL set on the config)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from api_client.db import sqlalchemy_url
from api_client.settings import get_settings
from embedq.migrations.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise RuntimeError("no database URL: set EMBEDQ_DATABASE_URL or pass --database-url")
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
