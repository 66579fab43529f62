"""``embedq status`` against the session's servers and worker, and against servers that are down."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from embedq.worker.cli.status import migration_heads
from tests import helpers
from tests.conftest import SESSION_WORKER
from tests.integration.test_cli import embedq

WORKER_NAME = SESSION_WORKER.replace("%h", socket.gethostname())


def test_healthy_service_exits_zero_and_reports_everything(eq, worker_env) -> None:
    eq.encode(["a status check"]).result(timeout=60)
    out = embedq(["status"], worker_env)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert f"schema    {', '.join(migration_heads())} (head {', '.join(migration_heads())})" in text
    assert WORKER_NAME in text and "embedq.cpu.interactive" in text
    assert "jobs      succeeded 1" in text
    assert out.stderr == b""

    report = json.loads(embedq(["status", "--json"], worker_env).stdout)
    assert report["healthy"] is True and report["problems"] == []
    assert report["broker"]["reachable"] and report["database"]["reachable"]
    assert report["database"]["at_head"] and report["database"]["schema"] == migration_heads()
    assert report["database"]["pgvector"]
    assert WORKER_NAME in [worker["node"] for worker in report["database"]["workers"]]
    assert report["database"]["jobs"] == {"succeeded": 1}
    assert {"embedq.cpu.interactive", "embedq.cpu.batch", "embedq.gpu.interactive", "celery"} <= set(
        report["broker"]["queues"]
    )


def test_queue_depths_count_waiting_messages(eq, worker_env, broker_url) -> None:
    if not broker_url.startswith("redis://"):
        pytest.skip("counts messages on a Redis database no worker consumes")
    import redis

    from api_client.celery_conf import producer_app
    from api_client.settings import get_settings

    quiet = helpers.other_redis_db(broker_url)
    env = {**worker_env, "EMBEDQ_BROKER_URL": quiet}
    app = producer_app(get_settings(env, env_file=False))
    try:
        for _ in range(3):
            app.send_task("embedq.encode", kwargs={"job_id": str(uuid.uuid4())}, queue="embedq.gpu.batch")
        report = json.loads(embedq(["status", "--json"], env).stdout)
    finally:
        app.close()
        redis.Redis.from_url(quiet).delete("embedq.gpu.batch")
    assert report["broker"]["queues"]["embedq.gpu.batch"] == 3
    assert report["broker"]["queues"]["embedq.cpu.batch"] == 0


def test_unreachable_broker_exits_one_and_hides_the_password(eq, worker_env) -> None:
    env = {**worker_env, "EMBEDQ_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"}
    out = embedq(["status", "--timeout", "2"], env)
    assert out.returncode == 1
    assert "embedq: not healthy: broker unreachable" in out.stderr.decode()
    assert "broker    redis://:***@127.0.0.1:1/0  UNREACHABLE" in out.stdout.decode()
    assert "hunter2" not in (out.stdout + out.stderr).decode()
    report = json.loads(embedq(["status", "--json", "--timeout", "2"], env).stdout)
    assert report["healthy"] is False and report["database"]["reachable"] is True


def test_unreachable_database_exits_one(eq, worker_env) -> None:
    env = {**worker_env, "EMBEDQ_DATABASE_URL": "postgresql://embedq:hunter2@127.0.0.1:1/embedq"}
    out = embedq(["status", "--timeout", "2"], env)
    assert out.returncode == 1
    assert "embedq: not healthy: database unreachable" in out.stderr.decode()
    assert "database  postgresql://embedq:***@127.0.0.1:1/embedq  UNREACHABLE" in out.stdout.decode()
    assert "hunter2" not in (out.stdout + out.stderr).decode()


def test_a_database_never_migrated_says_to_migrate(worker_env, database_url) -> None:
    url = helpers.create_database(database_url, "embedq_status")
    try:
        out = embedq(["status"], {**worker_env, "EMBEDQ_DATABASE_URL": url})
    finally:
        helpers.drop_database(url, database_url)
    assert out.returncode == 1
    err = out.stderr.decode()
    assert f"schema at never migrated, head is {', '.join(migration_heads())}: run `embedq migrate`" in err
    assert "no live worker" in err


def test_a_database_behind_head_says_to_migrate(worker_env, database_url) -> None:
    from embedq import migrations

    heads = migration_heads()
    assert heads, "no head revision found in migrations/versions"
    url = helpers.create_database(database_url, "embedq_status")
    try:
        migrations.upgrade(url, "0001")
        out = embedq(["status", "--json"], {**worker_env, "EMBEDQ_DATABASE_URL": url})
    finally:
        helpers.drop_database(url, database_url)
    report = json.loads(out.stdout)
    assert out.returncode == 1  # and no worker uses this database
    assert report["database"]["schema"] == ["0001"]
    assert report["database"]["at_head"] is (heads == ["0001"])
    if heads != ["0001"]:
        assert f"schema at 0001, head is {', '.join(heads)}: run `embedq migrate`" in report["problems"]


def test_no_live_worker_exits_one(worker_env, isolated_database) -> None:
    out = embedq(["status"], {**worker_env, "EMBEDQ_DATABASE_URL": isolated_database})
    assert out.returncode == 1
    assert out.stderr.decode() == "embedq: not healthy: no live worker\n"
    assert "workers   0 live" in out.stdout.decode()
