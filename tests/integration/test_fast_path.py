"""The single-text path: one finishing statement per encode job, and its result announced with the notification."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import psycopg
import pytest

from api_client import EmbedQ, JobStatus
from api_client.cache_keys import text_sha256
from api_client.notify import Notifier, parse_notice
from api_client.results import with_options
from api_client.store import embeddings as embeddings_read
from api_client.store import jobs as jobs_read
from api_client.store.jobs import RESULT_CHANNEL
from embedq.worker.store import embeddings as embeddings_store
from embedq.worker.store import jobs as jobs_store
from embedq.worker.store import models as models_store
from tests import helpers


def notices(conn: psycopg.Connection, timeout: float = 10.0) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]


def test_a_single_text_job_is_announced_with_its_row_and_raw_vectors(eq: EmbedQ, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {RESULT_CHANNEL}")
        job = eq.encode(helpers.unique_texts(1), normalize=True)
        (payload,) = notices(listener)
        notice = parse_notice(payload)
        assert payload.startswith(job.id + " ")
        assert notice.info == job.info()
        assert notice.info.status == JobStatus.SUCCEEDED and notice.info.result["encoded"] == 1
        with psycopg.connect(database_url, autocommit=True) as conn:
            stored = embeddings_read.read_job_vectors(conn=conn, job_id=job.id, count=1)
        assert notice.raw is not None
        np.testing.assert_array_equal(notice.raw, stored)
        np.testing.assert_array_equal(with_options(None, notice.info, notice.raw), job.result())


def test_a_job_served_from_the_cache_or_too_large_is_announced_without_vectors(eq: EmbedQ, database_url: str) -> None:
    texts = helpers.unique_texts(3)
    eq.encode(texts[:1]).result(timeout=60)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {RESULT_CHANNEL}")
        cached = eq.encode(texts[:1])
        notice = parse_notice(notices(listener)[0])
        assert notice.info == cached.info() and notice.raw is None
        many = eq.encode(texts)  # three vectors are over the notice's size
        notice = parse_notice(notices(listener)[0])
        assert notice.info.id == many.id and notice.raw is None
    assert cached.result().shape == (1, 384) and many.result().shape == (3, 384)


def claimed_job(db: psycopg.Connection, texts: list[str]) -> jobs_store.Claim:
    """A job recorded without a message (the session worker never sees it), claimed here."""
    request = {"texts": texts}
    job_id = jobs_read.create_job(
        conn=db, kind="encode", queue="q", request=request, total=len(texts), max_attempts=3
    ).info.id
    claim = jobs_store.claim_job(conn=db, job_id=job_id, kind="encode", worker="test/1", lease_seconds=30)
    assert claim is not None
    return claim


def test_a_relaxed_claim_leaves_every_later_commit_synchronous(db) -> None:
    claimed_job(db, ["d"])
    assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    with db.transaction():  # inside a caller's transaction nothing is relaxed, whatever it commits later
        claim = claimed_job(db, ["e"])
        jobs_store.record_progress(conn=db, claim=claim, done=0, total=1, lease_seconds=30)
        assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"


@pytest.fixture
def model_id(db: psycopg.Connection) -> int:
    return models_store.upsert_model(
        conn=db, name="fast-path", sha256="f" * 64, artifact_path="/nowhere", dimension=4, max_seq_length=8, config={}
    ).id


def _finish(db: psycopg.Connection, claim: Any, *, keys: list, new_keys: list, new_vectors: Any, **finish: Any) -> bool:
    """As ``embedq.worker.finishing.finish`` does: the outputs and the fenced final state in one transaction."""
    finished = False
    with db.transaction():
        jobs_store.write_encode_outputs(
            conn=db, claim=claim, model_id=finish.pop("model_id"), keys=keys, new_keys=new_keys,
            new_vectors=new_vectors,
        )  # fmt: skip
        finished = jobs_store.finish_job(conn=db, claim=claim, **finish)
        if not finished:
            raise psycopg.Rollback()  # the transaction block rolls back and goes on
    return finished


def test_the_finishing_transaction_writes_new_vectors_outputs_and_state_at_once(db, model_id: int) -> None:
    claim = claimed_job(db, ["a", "b", "a"])
    a, b = text_sha256("a"), text_sha256("b")
    theirs = np.array([[9, 9, 9, 9]], dtype=np.float32)
    with db.transaction():  # another worker cached "a" meanwhile
        embeddings_store.write_embeddings(conn=db, model_id=model_id, keys=[a], vectors=theirs)
    mine = np.array([[1, 2, 3, 4], [5, 6, 7, 8.5]], dtype=np.float32)
    assert _finish(
        db,
        claim,
        result={"count": 3},
        total=3,
        model_id=model_id,
        keys=[a, b, a],
        new_keys=[b, a],
        new_vectors=mine,
    )
    info = jobs_read.get_job(conn=db, job_id=claim.job_id)
    assert info.status == JobStatus.SUCCEEDED and info.progress == (3, 3) and info.result == {"count": 3}
    vectors = embeddings_read.read_job_vectors(conn=db, job_id=claim.job_id, count=3)
    np.testing.assert_array_equal(vectors, [[9, 9, 9, 9], [1, 2, 3, 4], [9, 9, 9, 9]])


def test_a_job_taken_over_gets_nothing_from_the_finishing_transaction(db, model_id: int) -> None:
    claim = claimed_job(db, ["c"])
    db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = %s", (claim.job_id,))  # another worker's claim
    c = text_sha256("c")
    assert not _finish(
        db,
        claim,
        result={"count": 1},
        total=1,
        model_id=model_id,
        keys=[c],
        new_keys=[c],
        new_vectors=np.ones((1, 4), dtype=np.float32),
        notice=(4, "AAAA"),
    )
    assert jobs_read.get_job(conn=db, job_id=claim.job_id).status == JobStatus.RUNNING
    assert db.execute("SELECT count(*) FROM encode_outputs WHERE job_id = %s", (claim.job_id,)).fetchone()[0] == 0
    # Nothing of its outputs lands: whoever holds the job now writes its own.
    assert embeddings_store.cached_keys(conn=db, model_id=model_id, keys=[c]) == set()


def test_the_listener_keeps_notices_only_for_jobs_it_waits_on(database_url: str, db) -> None:
    notifier = Notifier(database_url)
    try:
        event = notifier.register("00000000-0000-0000-0000-00000000000a")
        helpers.wait_until(event.is_set, what="the listener to connect")
        event.clear()
        row = {
            "id": "00000000-0000-0000-0000-00000000000a",
            "kind": "encode",
            "status": "succeeded",
            "queue": "embedq.cpu.interactive",
            "progress": [1, 1],
            "attempts": 1,
            "result": {"count": 1},
            "error": None,
            "worker": "w/1",
            "idempotency_key": None,
            "created_at": "2026-11-28T10:00:00.5+00:00",
            "started_at": "2026-11-28T10:00:00.6+00:00",
            "finished_at": "2026-11-28T10:00:00.7+00:00",
            "parent_id": None,
            "chunks": 0,
        }
        raw = np.arange(4, dtype="<f4")
        body = {"info": row, "dim": 2, "vectors": base64.b64encode(raw.tobytes()).decode()}
        for job in ("00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"):
            db.execute(
                "SELECT pg_notify(%s, %s)",
                (RESULT_CHANNEL, f"{job} {json.dumps({**body, 'info': {**row, 'id': job}})}"),
            )
        assert event.wait(timeout=10)
        notice = notifier.take("00000000-0000-0000-0000-00000000000a")
        assert notice is not None and notice.info.progress == (1, 1) and notice.info.finished_at is not None
        np.testing.assert_array_equal(notice.raw, [[0, 1], [2, 3]])
        assert notifier.take("00000000-0000-0000-0000-00000000000a") is None
        assert notifier.notice("00000000-0000-0000-0000-00000000000b") is None
        notifier.unregister("00000000-0000-0000-0000-00000000000a", event)
    finally:
        notifier.close()
