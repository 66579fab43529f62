"""The index runners: build_index, and reindex (its chunks and its parent).

A build snapshots the collection under its build lock and writes the new
version's artifact (``embedq.worker.indexes.build``); its outcome activates
that version with the job's final state (``activate``), unless a newer
version overtook it.

A reindex re-embeds every document with the new model (as chunk jobs over id
ranges when the collection is large: any worker takes them, and each only
fills the embedding cache), then its parent embeds what is still missing
(documents upserted meanwhile), builds, checks the recall@10 of the new index
against exact search on a sample of the collection's own documents
(``embedq.cores.index.gate_recall``), and its outcome swaps model and index in
one transaction, only if the gate passed. Searches answer from the old
version until then.
"""

from __future__ import annotations

from typing import Any

from api_client.errors import BadRequest, GateFailed
from api_client.kinds.collections import BuildRequest, ReindexRequest
from embedq.cores import index as index_core
from embedq.cores.models import LoadedModel
from embedq.worker.cache import ensure_cached
from embedq.worker.indexes import Built, activate, build, building
from embedq.worker.lease import Progress
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime
from embedq.worker.store import collections as collections_store
from embedq.worker.store.collections import Collection
from embedq.worker.store.jobs import Claim

MISSING_BATCH = 2048
"""Documents read at a time when a reindex embeds those still lacking a vector under the new model."""


def _summary(collection: Collection, built: Built, **extra: Any) -> dict[str, Any]:
    return {
        "collection": collection.name,
        "index_version": built.version,
        "index_id": built.index_id,
        "kind": built.params["kind"],
        "params": built.params,
        "count": built.count,
        "max_seq": built.snapshot.max_seq,
        "path": str(built.path),
        **extra,
    }


@runs("build_index")
def run_build(rt: Runtime, claim: Claim, request: BuildRequest) -> Outcome:
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    rt.progress(claim, total=0, done=0)
    with building(rt, collection) as current:
        if current.model_id is None:
            raise BadRequest(
                f"collection {current.name!r} has no documents yet: upsert some before building its index",
                detail={"field": "collection", "collection": current.name},
            )
        built = build(rt, claim, current, model_id=current.model_id, kind=request.kind, params=request.params)
    return Outcome(
        _summary(current, built),
        write=lambda conn: activate(conn, current, built, metrics={}),
        total=built.count,
    )


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


@runs("reindex")
def run_reindex(rt: Runtime, claim: Claim, request: ReindexRequest) -> Outcome:
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    target = request.model or collection.model
    model, model_id = rt.job_model(claim, target, request.backend, parent=True)
    if claim.parent_id is not None:
        return _reindex_chunk(rt, claim, request, collection=collection, model=model, model_id=model_id)
    progress = rt.progress(claim, total=collections_store.live_count(conn=rt.conn, collection_id=collection.id), done=0)

    def embed_missing() -> int:
        return _embed_missing(rt, collection, model=model, model_id=model_id, request=request, progress=progress)

    with building(rt, collection) as current:
        embedded = embed_missing()
        built = build(
            rt, claim, current, model_id=model_id, kind=request.kind, params=request.params, embed_missing=embed_missing
        )
    recall = index_core.gate_recall(built.index, built.vectors, params=built.params)
    metrics = {"gate": {"recall_at_10": recall, "min_recall": request.min_recall, "sample": index_core.GATE_SAMPLE}}
    if recall < request.min_recall:
        collections_store.fail_index(conn=rt.conn, index_id=built.index_id, metrics=metrics)
        stays = f"version {current.index_version} stays active" if current.index_version else "none was active"
        raise GateFailed(
            f"the new index's recall@10 is {recall:.3f}, below the gate of {request.min_recall}; {stays}",
            detail={"recall_at_10": recall, "min_recall": request.min_recall, "index_version": built.version},
        )
    embedded += embed_missing()  # written while it built: the swap refuses documents without a vector
    summary = _summary(current, built, model=target, model_id=model_id, embedded=embedded, **metrics)
    return Outcome(
        summary,
        write=lambda conn: activate(conn, current, built, metrics=metrics, model=(target, model_id)),
        total=progress.total,
    )


def _reindex_chunk(
    rt: Runtime, claim: Claim, request: ReindexRequest, *, collection: Collection, model: LoadedModel, model_id: int
) -> Outcome:
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
    return Outcome(summary, total=len(texts))
