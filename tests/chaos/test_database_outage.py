"""A client waiting for a job rides out a database outage until its own timeout.

On a database of its own, with a worker of its own: the database refuses every
connection for a while (``ALLOW_CONNECTIONS false`` and every session ended,
as in a restart), then comes back; the job finishes and the waiting caller
gets its result instead of ``DatabaseUnavailable``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pytest

from api_client import EmbedQ
from api_client.errors import DatabaseUnavailable
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers


def set_reachable(admin_url: str, database: str, reachable: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(reachable).lower()}')
        if not reachable:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))


def test_a_waiting_client_gets_its_result_after_the_database_comes_back(
    isolated_database: str, database_url: str, broker_url: str, tmp_path: Path, st_model, caplog
) -> None:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_CONNECT_TIMEOUT="1")
    database = urlsplit(isolated_database).path.lstrip("/")
    worker = helpers.start_worker(env, isolated_database, "outage@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    outcome: dict[str, object] = {}
    try:
        texts = helpers.unique_texts(400)
        job = eq.encode(texts, batch_size=8)
        helpers.wait_until(lambda: job.progress[0] > 0, timeout=120, what="the job to start")

        def wait() -> None:
            try:
                outcome["vectors"] = job.result(timeout=240)
            except Exception as exc:
                outcome["error"] = exc

        caplog.set_level(logging.WARNING, logger="api_client.client")
        waiter = threading.Thread(target=wait)
        waiter.start()
        set_reachable(database_url, database, False)
        try:
            helpers.wait_until(
                lambda: any("waiting for job" in record.getMessage() for record in caplog.records),
                timeout=60,
                what="the waiting client to meet the outage",
            )
            assert waiter.is_alive() and not outcome, outcome
        finally:
            set_reachable(database_url, database, True)
        waiter.join(timeout=240)
        assert not waiter.is_alive()
        assert "error" not in outcome, outcome.get("error")
        vectors = outcome["vectors"]
        assert isinstance(vectors, np.ndarray)
        assert np.abs(vectors - st_model.encode(texts, batch_size=8)).max() < 1e-5
    finally:
        set_reachable(database_url, database, True)
        eq.close()
        stop_worker(worker, timeout=30)


def test_past_its_own_timeout_the_caller_gets_database_unavailable(
    isolated_database: str, database_url: str, broker_url: str
) -> None:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_CONNECT_TIMEOUT="1")
    database = urlsplit(isolated_database).path.lstrip("/")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        job = eq.encode(["never taken: no worker consumes this broker"])
        set_reachable(database_url, database, False)
        with pytest.raises(DatabaseUnavailable):
            job.result(timeout=3)
    finally:
        set_reachable(database_url, database, True)
        eq.close()
