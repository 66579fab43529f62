"""Recovery keeps each job's kind: the sweeper re-sends a job to its own task, and a task refuses other kinds."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from celery import Celery

from api_client import EmbedQ
from api_client.celery_conf import producer_app
from api_client.db import sqlalchemy_url
from api_client.errors import WrongKind
from api_client.kinds import KINDS
from api_client.schemas import Limits
from api_client.states import JobKind
from api_client.submit import record
from embedq.worker.store.jobs import claim_job
from tests import helpers

QUEUE = "embedq.cpu.interactive"


def record_unsent(conn: psycopg.Connection, settings, kind: JobKind, raw: dict) -> str:
    """A queued job whose message was never sent, as after a client crash between commit and send."""
    spec = KINDS[kind]
    created = record(conn=conn, spec=spec, request=spec.parse(raw, Limits.of(settings)), queue=QUEUE, settings=settings)
    return created.info.id


def test_a_lost_similarity_job_is_resent_as_similarity(eq: EmbedQ, db, settings, st_model) -> None:
    texts = helpers.unique_texts(5)
    job_id = record_unsent(db, settings, "similarity", {"queries": texts[:2], "texts": texts[2:]})
    scores = eq.job(job_id).result(timeout=60)
    expected = st_model.similarity(st_model.encode(texts[:2]), st_model.encode(texts[2:])).numpy()
    assert scores.shape == (2, 3) and np.abs(scores - expected).max() < 1e-5
    row = helpers.job_row(db, job_id)
    assert row["sends"] >= 2 and row["kind"] == "similarity" and row["error"] is None


def test_a_message_for_the_wrong_kind_does_not_run_the_job(
    eq: EmbedQ, db, settings, st_model, broker_url: str, database_url: str
) -> None:
    texts = helpers.unique_texts(3)
    job_id = record_unsent(db, settings, "encode", {"texts": texts})
    producer = producer_app(settings)
    wrong = str(uuid.uuid4())
    try:
        producer.send_task("embedq.similarity", kwargs={"job_id": job_id}, queue=QUEUE, task_id=wrong)
    finally:
        producer.close()

    # The workers record every task's outcome: the similarity task refused the message and ran nothing.
    backend = Celery(broker=broker_url, backend="db+" + sqlalchemy_url(database_url))
    try:
        refused = backend.AsyncResult(wrong).get(timeout=30)
    finally:
        backend.close()
    assert refused["status"] == "refused" and refused["job_id"] == job_id
    assert refused["error"]["type"] == "WrongKind" and "cannot run it" in refused["error"]["message"]

    # The sweeper then re-sends the job to its own task, and it runs once, as an encode job.
    vectors = eq.job(job_id).result(timeout=60)
    assert vectors.shape == (3, 384) and np.abs(vectors - st_model.encode(texts)).max() < 1e-5
    row = helpers.job_row(db, job_id)
    assert row["kind"] == "encode" and row["attempts"] == 1 and row["error"] is None
    assert db.execute("SELECT count(*) FROM job_arrays WHERE job_id = %s", (job_id,)).fetchone()[0] == 0


def test_claim_refuses_a_job_of_another_kind_and_leaves_it_queued(isolated_database: str, settings) -> None:
    with psycopg.connect(isolated_database, autocommit=True) as conn:
        job_id = record_unsent(conn, settings, "encode", {"texts": ["a text to encode"]})
        with pytest.raises(WrongKind, match="a message for the similarity task cannot run it") as caught:
            claim_job(conn=conn, job_id=job_id, kind="similarity", worker="test/1", lease_seconds=30)
        assert caught.value.detail == {"job_id": job_id, "kind": "encode", "task_kind": "similarity"}
        row = helpers.job_row(conn, job_id)
        assert row["status"] == "queued" and row["attempts"] == 0 and row["worker"] is None
        # Its own kind still takes it.
        claim = claim_job(conn=conn, job_id=job_id, kind="encode", worker="test/1", lease_seconds=30)
        assert claim is not None and claim.attempt == 1 and claim.kind == "encode"
