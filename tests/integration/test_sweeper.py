"""The sweeper re-sends lost jobs and fails jobs out of attempts (run by the session worker)."""

from __future__ import annotations

import json

import psycopg
import pytest

from api_client import EmbedQ, JobStatus
from api_client.celery_conf import producer_app
from api_client.errors import AttemptsExhausted
from api_client.settings import get_settings
from api_client.store import jobs as jobs_store
from embedq.worker.cli import main
from tests import helpers


def insert_job(db, texts: list[str]) -> str:
    """A queued job whose message was never sent, as after a client crash between commit and send."""
    info = jobs_store.create_job(
        conn=db,
        kind="encode",
        queue="embedq.cpu.interactive",
        request={"texts": texts},
        total=len(texts),
        max_attempts=3,
    ).info
    return info.id


def test_a_job_whose_message_was_lost_still_runs(eq: EmbedQ, db) -> None:
    job_id = insert_job(db, helpers.unique_texts(3))
    assert eq.job(job_id).result(timeout=60).shape == (3, 384)
    assert helpers.job_row(db, job_id)["sends"] >= 2


def test_a_job_whose_worker_vanished_is_taken_over(eq: EmbedQ, db) -> None:
    job_id = insert_job(db, helpers.unique_texts(3))
    db.execute(
        "UPDATE jobs SET status = 'running', attempts = 1, worker = 'gone/1', "
        "lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (job_id,),
    )
    info = eq.job(job_id).wait(timeout=60)
    assert info.status == JobStatus.SUCCEEDED
    assert info.attempts == 2 and info.worker != "gone/1"


def test_a_job_out_of_attempts_fails_with_its_last_error(eq: EmbedQ, db) -> None:
    job_id = insert_job(db, ["x"])
    db.execute(
        "UPDATE jobs SET status = 'running', attempts = 3, lease_expires_at = now() - interval '1 second', "
        'error = \'{"type": "OutOfMemory", "message": "CUDA out of memory", "retriable": true}\' '
        "WHERE id = %s",
        (job_id,),
    )
    with pytest.raises(
        AttemptsExhausted, match="on every one of its 3 attempts: last error: OutOfMemory: CUDA out of memory"
    ) as caught:
        eq.job(job_id).result(timeout=30)
    assert caught.value.detail["attempts"] == 3


def test_sweep_command_resends_a_lost_job_and_reports_it(isolated_database, broker_url, monkeypatch, capsys) -> None:
    """``embedq sweep`` on a stack with no worker: the lost job's message is on the broker afterwards."""
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with psycopg.connect(isolated_database, autocommit=True) as conn:
        lost = insert_job(conn, ["x"])
        conn.execute("UPDATE jobs SET sent_at = now() - interval '1 hour' WHERE id = %s", (lost,))
    app = producer_app(get_settings(env, env_file=False))
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("embedq.cpu.interactive")
    assert main(["sweep"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["locked"] is True and report["resent"] == [lost] and report["failed"] == []
    with app.connection_for_read() as connection:
        message = connection.default_channel.basic_get(queue="embedq.cpu.interactive", no_ack=True)
    assert message is not None and message.headers["id"] == lost and message.headers["task"] == "embedq.encode"
    app.close()
