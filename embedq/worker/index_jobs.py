"""Running index builds and reindexes: a snapshot of the documents, a FAISS build, an artifact, a swap.

A build reads every live document and its vector in one repeatable-read
snapshot, builds the index (the kind by size with ``auto``), writes it as a
versioned artifact (temporary folder, manifest with the sha256 of every file,
atomic rename) and, in one transaction with the job's final state, makes it
the collection's active version and drops the tombstones it folded in.

A reindex re-embeds every document with the new model (as chunk jobs over id
ranges when the collection is large: any worker takes them), then its parent
embeds what is still missing (documents upserted meanwhile), builds, checks
the recall@10 of the new index against exact search on a sample of the
collection's own documents as queries, and swaps model and index in one
transaction, only if the gate passed. Searches answer from the old version
until then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api_client.errors import BadRequest, GateFailed, RetriableError
from api_client.postprocess import truncate_and_normalize
from api_client.schemas import Limits
from api_client.schemas_collections import ReindexRequest, parse_build_request, parse_reindex_request
from embedq.cores import index as index_core
from embedq.cores.artifacts import remove_stale_temps, write_artifact
from embedq.cores.models import LoadedModel
from embedq.worker.cache import commit, ensure_cached
from embedq.worker.lease import Progress, finish
from embedq.worker.runtime import Runtime
from embedq.worker.store import collections as collections_store
from embedq.worker.store.collections import Collection, Snapshot, StillMissing
from embedq.worker.store.jobs import Claim

log = logging.getLogger(__name__)

GATE_SAMPLE = 200
GATE_K = 10
RETRIES = 5
"""Rounds of embedding what was written meanwhile before a reindex's snapshot or swap gives up (and retries)."""
MISSING_BATCH = 2048


@dataclass(frozen=True)
class Built:
    """An index version written to disk, not yet active."""

    index_id: int
    version: int
    path: Path
    params: dict[str, Any]
    snapshot: Snapshot
    vectors: np.ndarray
    index: Any


@contextmanager
def building(rt: Runtime, collection: Collection) -> Iterator[None]:
    """One build of a collection at a time, across the fleet (a session advisory lock, gone with the connection)."""
    rt.indexes  # noqa: B018 (FAISS's threads and BLAS threshold are set with the index cache)
    collections_store.build_lock(rt.conn, collection.id)
    try:
        yield
    finally:
        try:
            collections_store.build_unlock(rt.conn, collection.id)
        except Exception as exc:  # the connection broke: the lock went with it
            log.warning("build lock of collection %s: %s", collection.name, exc)


def build(
    rt: Runtime,
    claim: Claim,
    collection: Collection,
    *,
    model_id: int,
    kind: str,
    params: dict[str, int] | None,
    embed_missing: Callable[[], int] | None = None,
) -> Built:
    """Snapshot, build and write the artifact of a new index version of ``collection`` under ``model_id``.

    Call it inside ``building``. ``embed_missing`` (a reindex) embeds documents
    written meanwhile that have no vector under ``model_id`` yet.
    """
    root = rt.settings.artifacts
    remove_stale_temps(root, "index", collection.name)
    index_id, version = collections_store.reserve_index_version(
        conn=rt.conn, collection_id=collection.id, kind=kind, model_id=model_id, job_id=claim.output_id
    )
    snapshot = _snapshot(rt, collection, model_id, embed_missing)
    vectors = snapshot.vectors
    if len(vectors):
        vectors = truncate_and_normalize(vectors, truncate_dim=None, normalize=collection.normalize)
    chosen = index_core.choose_kind(len(vectors), kind)
    if chosen != "flat" and len(vectors) == 0:
        chosen = "flat"
    dimension = vectors.shape[1] if len(vectors) else _dimension(rt, collection)
    matrix = vectors if len(vectors) else np.zeros((0, dimension), dtype=np.float32)
    index, used = index_core.build_index(matrix, chosen, params=params)

    def files(folder: Path) -> None:
        index_core.save_index(index, folder)
        (folder / "ids.json").write_text(json.dumps(snapshot.ids))
        np.save(folder / "seqs.npy", snapshot.seqs, allow_pickle=False)

    meta = {
        "collection": collection.name,
        "model_id": model_id,
        "normalize": collection.normalize,
        "count": len(snapshot.ids),
        "max_seq": snapshot.max_seq,
        "params": used,
        "job_id": claim.output_id,
    }
    path = write_artifact(root, "index", collection.name, str(version), files, meta)
    return Built(index_id, version, path, used, snapshot, matrix, index)


def _snapshot(rt: Runtime, collection: Collection, model_id: int, embed_missing: Callable[[], int] | None) -> Snapshot:
    for _ in range(RETRIES):
        try:
            return collections_store.snapshot(conn=rt.conn, collection_id=collection.id, model_id=model_id)
        except StillMissing:
            if embed_missing is None:
                raise
            embed_missing()
    raise RetriableError(f"documents of {collection.name!r} kept changing while a reindex read them; retrying")


def _dimension(rt: Runtime, collection: Collection) -> int:
    model, _ = rt.collection_model(collection)
    return model.dimension


def _summary(collection: Collection, built: Built, **extra: Any) -> dict[str, Any]:
    return {
        "collection": collection.name,
        "index_version": built.version,
        "index_id": built.index_id,
        "kind": built.params["kind"],
        "params": built.params,
        "count": len(built.snapshot.ids),
        "max_seq": built.snapshot.max_seq,
        "path": str(built.path),
        **extra,
    }


def run_build(rt: Runtime, claim: Claim) -> dict[str, Any]:
    request = parse_build_request(claim.request, Limits.of(rt.settings))
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    if collection.model_id is None:
        raise BadRequest(
            f"collection {collection.name!r} has no documents yet: upsert some before building its index",
            detail={"field": "collection", "collection": collection.name},
        )
    progress = rt.progress(claim, total=0, done=0)
    with building(rt, collection):
        built = build(rt, claim, collection, model_id=collection.model_id, kind=request.kind, params=request.params)
        summary = _summary(collection, built)
        progress.total = len(built.snapshot.ids)
        commit(rt.conn, lambda _skip: _activate(rt, claim, collection, built, summary))
    return summary


def _activate(rt: Runtime, claim: Claim, collection: Collection, built: Built, summary: dict[str, Any]) -> None:
    collections_store.activate_index(
        conn=rt.conn,
        collection_id=collection.id,
        index_id=built.index_id,
        path=str(built.path),
        params=built.params,
        count=len(built.snapshot.ids),
        max_seq=built.snapshot.max_seq,
        metrics={},
    )
    finish(rt.conn, claim, summary, len(built.snapshot.ids))


def gate(built: Built, *, sample: int = GATE_SAMPLE, k: int = GATE_K) -> float:
    """recall@k of the new index against exact search, the collection's own documents as queries."""
    n = len(built.vectors)
    if n == 0:
        return 1.0
    rows = np.linspace(0, n - 1, num=min(sample, n)).astype(np.int64)
    queries = built.vectors[rows]
    exact = index_core.build_index(built.vectors, "flat")[0]
    _, truth = index_core.search(exact, queries, min(k, n))
    _, found = index_core.search(built.index, queries, min(k, n), params=built.params)
    return index_core.recall_at_k(found, truth, min(k, n))


def _embed_missing(
    rt: Runtime,
    collection: Collection,
    *,
    model: LoadedModel,
    model_id: int,
    request: ReindexRequest,
    progress: Progress,
) -> int:
    """Embed live documents with no vector under ``model_id`` yet; returns how many texts were embedded."""
    done = 0
    while missing := collections_store.missing_vectors(
        conn=rt.conn, collection_id=collection.id, model_id=model_id, limit=MISSING_BATCH
    ):
        lookup = ensure_cached(
            rt,
            model=model,
            model_id=model_id,
            texts=[text for _, text in missing],
            batch_size=request.batch_size,
            progress=progress,
        )
        done += len(lookup.missing)
    return done


def run_reindex(rt: Runtime, claim: Claim) -> dict[str, Any]:
    request = parse_reindex_request(claim.request, Limits.of(rt.settings))
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    target = request.model or collection.model
    model, model_id = rt.job_model(claim, target, request.backend, parent=True)
    if claim.parent_id is not None:
        return _reindex_chunk(rt, claim, request, collection=collection, model=model, model_id=model_id)
    progress = rt.progress(claim, total=collections_store.live_count(conn=rt.conn, collection_id=collection.id), done=0)

    def embed_missing() -> int:
        return _embed_missing(rt, collection, model=model, model_id=model_id, request=request, progress=progress)

    with building(rt, collection):
        embedded = embed_missing()
        built = build(
            rt,
            claim,
            collection,
            model_id=model_id,
            kind=request.kind,
            params=request.params,
            embed_missing=embed_missing,
        )
        recall = gate(built)
        metrics = {"gate": {"recall_at_10": recall, "min_recall": request.min_recall, "sample": GATE_SAMPLE}}
        if recall < request.min_recall:
            collections_store.fail_index(conn=rt.conn, index_id=built.index_id, metrics=metrics)
            raise GateFailed(
                f"the new index's recall@10 is {recall:.3f}, below the gate of {request.min_recall}; "
                + (
                    f"version {collection.index_version} stays active"
                    if collection.index_version
                    else "none was active"
                ),
                detail={"recall_at_10": recall, "min_recall": request.min_recall, "index_version": built.version},
            )
        summary = _summary(collection, built, model=target, model_id=model_id, embedded=embedded, **metrics)

        def swap(_skip_existing: bool) -> None:
            collections_store.get_collection(conn=rt.conn, name=collection.name, lock="FOR UPDATE OF c")
            if collections_store.missing_vectors(conn=rt.conn, collection_id=collection.id, model_id=model_id, limit=1):
                raise StillMissing(collection.id)  # written since the snapshot: embed them, then swap
            collections_store.activate_index(
                conn=rt.conn,
                collection_id=collection.id,
                index_id=built.index_id,
                path=str(built.path),
                params=built.params,
                count=len(built.snapshot.ids),
                max_seq=built.snapshot.max_seq,
                metrics=metrics,
                model=(target, model_id),
            )
            finish(rt.conn, claim, summary, progress.total)

        for _ in range(RETRIES):
            try:
                commit(rt.conn, swap)
                return summary
            except StillMissing:
                summary["embedded"] += embed_missing()
    raise RetriableError(f"documents of {collection.name!r} kept changing while a reindex swapped; retrying")


def _reindex_chunk(
    rt: Runtime, claim: Claim, request: ReindexRequest, *, collection: Collection, model: LoadedModel, model_id: int
) -> dict[str, Any]:
    """One id range of a reindex: its documents' texts embedded with the new model into the cache."""
    texts = collections_store.texts_in_range(
        conn=rt.conn, collection_id=collection.id, id_from=request.id_from, id_to=request.id_to
    )
    progress = rt.progress(claim, total=len(texts), done=0)
    lookup = ensure_cached(
        rt, model=model, model_id=model_id, texts=texts, batch_size=request.batch_size, progress=progress
    )
    summary = {
        "collection": collection.name,
        "model_id": model_id,
        "count": len(texts),
        "cached": len(lookup.unique) - len(lookup.missing),
        "encoded": len(lookup.missing),
    }
    commit(rt.conn, lambda _skip: finish(rt.conn, claim, summary, len(texts)))
    return summary
