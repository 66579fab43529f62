"""Chunked jobs on the session worker: a large encode runs as chunk jobs under one parent.

The session worker and the default client run whole jobs (chunk size 5000); these
tests use a second client whose chunk size is 100, so 250 texts make a parent
and three chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from psycopg.rows import dict_row

from api_client import EmbedQ, JobStatus
from api_client.celery_conf import producer_app
from api_client.errors import BadRequest, JobCancelled
from api_client.kinds import KINDS
from api_client.kinds.encode import EncodeRequest
from api_client.requests import Limits
from api_client.settings import get_settings
from api_client.submit import record, send
from tests import helpers

CHUNK = 100
WAIT = 180


@pytest.fixture(scope="module")
def chunked_client(worker_env: dict[str, str], session_worker) -> Iterator[EmbedQ]:
    """A client that splits encodes of more than 100 texts, served by the session worker."""
    client = EmbedQ(get_settings({**worker_env, "EMBEDQ_CHUNK_SIZE": str(CHUNK)}, env_file=False))
    yield client
    client.close()


@pytest.fixture
def eq(chunked_client: EmbedQ, db) -> EmbedQ:
    """The chunking client, on clean tables."""
    return chunked_client


def chunk_rows(db, parent_id: str) -> list[dict]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM jobs WHERE parent_id = %s ORDER BY chunk_index", (parent_id,)).fetchall()


def chunk_done_sum(db, parent_id: str) -> int:
    return db.execute("SELECT coalesce(sum(progress_done), 0) FROM jobs WHERE parent_id = %s", (parent_id,)).fetchone()[
        0
    ]


def test_a_large_encode_runs_as_chunks_and_reads_back_in_order(eq: EmbedQ, db, st_model) -> None:
    texts = helpers.unique_texts(250)
    job = eq.encode(texts)

    seen: list[JobStatus] = []

    def finished() -> bool:
        seen.append(job.status)
        return seen[-1].terminal

    helpers.wait_until(finished, timeout=WAIT, interval=0.02, what="the chunked job to finish")
    assert JobStatus.RUNNING in seen, sorted(set(seen))
    assert seen[-1] == JobStatus.SUCCEEDED, job.error

    info = job.info()
    assert info.chunks == 3 and info.parent_id is None
    assert info.progress == (250, 250)
    assert info.result is not None
    assert info.result["count"] == 250 and info.result["chunks"] == 3
    assert info.result["cached"] + info.result["encoded"] == 250

    chunks = chunk_rows(db, job.id)
    assert [c["chunk_index"] for c in chunks] == [0, 1, 2]
    assert [c["item_offset"] for c in chunks] == [0, 100, 200]
    assert [c["progress_total"] for c in chunks] == [100, 100, 50]
    assert all(c["status"] == "succeeded" and c["kind"] == "encode" for c in chunks)
    assert [c["request"]["texts"] for c in chunks] == [texts[:100], texts[100:200], texts[200:]]

    vectors = job.result(timeout=1)
    assert vectors.shape == (250, 384)
    assert np.abs(vectors - st_model.encode(texts)).max() < 1e-5
    outputs = db.execute(
        "SELECT count(*), count(DISTINCT item), min(item), max(item) FROM encode_outputs WHERE job_id = %s",
        (job.id,),
    ).fetchone()
    assert outputs == (250, 250, 0, 249)

    listed = {j.id for j in eq.jobs(limit=50)}
    assert job.id in listed
    assert not listed & {str(c["id"]) for c in chunks}


def test_a_running_parents_progress_is_the_sum_of_its_chunks(eq: EmbedQ, db) -> None:
    job = eq.encode(helpers.unique_texts(300), batch_size=8)
    samples = []

    def sample() -> bool:
        before = chunk_done_sum(db, job.id)
        info = job.info()
        after = chunk_done_sum(db, job.id)
        samples.append((before, info.progress, after, info.status))
        return info.status.terminal

    helpers.wait_until(sample, timeout=WAIT, interval=0.05, what="the chunked job to finish")
    assert job.status == JobStatus.SUCCEEDED
    running = [s for s in samples if s[3] == JobStatus.RUNNING]
    assert any(0 < progress[0] < 300 for _, progress, _, _ in running), samples[:20]
    for before, (done, total), after, _ in running:
        assert total == 300
        assert before <= done <= after, (before, done, after)
    assert job.progress == (300, 300)


def test_cancelling_a_parent_cancels_its_open_chunks(eq: EmbedQ, db) -> None:
    job = eq.encode(helpers.unique_texts(300), batch_size=8)
    helpers.wait_until(lambda: job.progress[0] > 0, timeout=WAIT, what="the chunked job to make progress")
    assert job.status == JobStatus.RUNNING

    assert job.cancel() == JobStatus.CANCELLED

    def settled() -> list[dict] | None:
        rows = chunk_rows(db, job.id)
        return rows if all(c["status"] not in ("queued", "running") for c in rows) else None

    rows = settled()  # the parent and its open chunks end in one transaction
    assert rows is not None, chunk_rows(db, job.id)
    assert {c["status"] for c in rows} <= {"cancelled", "succeeded"}
    assert "cancelled" in {c["status"] for c in rows}
    with pytest.raises(JobCancelled):
        job.result(timeout=10)

    # The worker goes on with new work, and a cancelled chunk stays cancelled (its worker was fenced off).
    assert eq.encode(helpers.unique_texts(2)).result(timeout=WAIT).shape == (2, 384)
    assert [c["status"] for c in chunk_rows(db, job.id)] == [c["status"] for c in rows]
    assert helpers.job_row(db, job.id)["status"] == "cancelled"


def test_a_chunk_that_fails_fails_its_parent_with_its_error(eq: EmbedQ, db) -> None:
    settings = eq.settings
    spec = KINDS["encode"]
    request = EncodeRequest.parse({"texts": helpers.unique_texts(250)}, Limits.of(settings))
    created = record(conn=db, spec=spec, request=request, queue="embedq.cpu.batch", settings=settings)
    assert created.info.chunks == 3 and len(created.messages) == 3
    bad = created.messages[1][0]
    db.execute("""UPDATE jobs SET request = '{"texts": [""]}' WHERE id = %s""", (bad,))
    app = producer_app(settings)
    try:
        send(app, created)
    finally:
        app.close()

    job = eq.job(created.info.id)
    info = job.wait(timeout=WAIT)
    assert info.status == JobStatus.FAILED
    assert info.error is not None and info.error["type"] == "BadRequest"
    assert "texts[0]" in info.error["message"]
    bad_row = helpers.job_row(db, bad)
    assert bad_row["status"] == "failed" and bad_row["error"] == info.error

    rows = helpers.wait_until(
        lambda: (r := chunk_rows(db, job.id)) and all(c["status"] not in ("queued", "running") for c in r) and r,
        timeout=WAIT,
        what="every chunk to end",
    )
    assert rows[0]["status"] in ("succeeded", "cancelled")
    assert rows[2]["status"] == "cancelled" and rows[2]["attempts"] == 0  # never ran
    with pytest.raises(BadRequest):
        job.result(timeout=1)


def test_the_same_chunked_request_twice_with_one_key_is_one_job(eq: EmbedQ, db, st_model) -> None:
    texts = helpers.unique_texts(250)
    first = eq.encode(texts, idempotency_key="chunked-once")
    second = eq.encode(texts, idempotency_key="chunked-once")
    assert first.id == second.id
    assert second.result(timeout=WAIT).shape == (250, 384)
    assert db.execute("SELECT count(*) FROM jobs WHERE parent_id IS NULL").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM jobs WHERE parent_id = %s", (first.id,)).fetchone()[0] == 3
    assert eq.encode(texts, idempotency_key="chunked-once").id == first.id  # also once it has finished
