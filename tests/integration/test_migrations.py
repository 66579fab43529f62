"""Alembic is the only schema: upgrade, downgrade, and agreement with embedq.migrations.tables."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from api_client.db import sqlalchemy_url
from embedq import migrations
from embedq.migrations.tables import metadata
from embedq.worker.cli import main
from embedq.worker.cli.status import migration_heads
from tests import helpers

TABLES = {
    "models",
    "model_serving",
    "jobs",
    "embeddings",
    "encode_outputs",
    "quantization_ranges",
    "workers",
    "job_arrays",
    "collections",
    "documents",
    "index_versions",
    "search_results",
    "classifiers",
    "classifier_versions",
    "item_results",
}


@pytest.fixture
def fresh_url(database_url: str) -> Iterator[str]:
    url = helpers.create_database(database_url, "embedq_migrations")
    yield url
    helpers.drop_database(url, database_url)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows} - {"alembic_version"}


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    assert migrations.current(fresh_url) is None
    migrations.upgrade(fresh_url)
    assert tables(fresh_url) == TABLES
    assert [migrations.current(fresh_url)] == migration_heads()
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'jobs_notify_done'").fetchone()

    migrations.downgrade(fresh_url, "base")
    assert tables(fresh_url) == set()
    assert migrations.current(fresh_url) is None

    migrations.upgrade(fresh_url)
    assert tables(fresh_url) == TABLES


def test_table_definitions_match_the_migrated_schema(fresh_url: str) -> None:
    migrations.upgrade(fresh_url)
    engine = create_engine(sqlalchemy_url(fresh_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert diff == []


def test_migrate_command(fresh_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--database-url", fresh_url]) == 0
    assert f"database at revision {migration_heads()[0]}" in capsys.readouterr().out
    assert main(["migrate", "--database-url", fresh_url, "--downgrade", "base"]) == 0
    assert "base (empty)" in capsys.readouterr().out


def test_a_server_without_pgvector_gets_a_clear_error() -> None:
    url = os.environ.get("EMBEDQ_TEST_PLAIN_DATABASE_URL")
    if not url:
        pytest.skip("EMBEDQ_TEST_PLAIN_DATABASE_URL (a PostgreSQL without pgvector) is not set; .ci/run sets it")
    fresh = helpers.create_database(url, "embedq_no_vector")
    try:
        with pytest.raises(RuntimeError, match="has no pgvector extension"):
            migrations.upgrade(fresh)
        assert tables(fresh) == set()
    finally:
        helpers.drop_database(fresh, url)
