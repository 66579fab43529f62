"""Running upsert and delete jobs: documents written in one transaction with the job's final state.

An upsert embeds its texts through the cache first (unchanged texts cost
nothing), then, holding the collection row ``FOR UPDATE``, binds the collection to the worker's model version on
its first upsert (and refuses any other version after that) and writes the
documents: each change takes a new ``seq``, which is what makes it part of
the delta searched beside the active index. Writers of one collection take
turns on its row, so its ``seq`` values commit in order: a reader that has
seen ``seq`` N has seen every change below it.
"""

from __future__ import annotations

from typing import Any

from api_client.schemas import Limits
from api_client.schemas_collections import parse_delete_request, parse_upsert_request
from embedq.worker.cache import commit, ensure_cached
from embedq.worker.lease import finish
from embedq.worker.runtime import Runtime
from embedq.worker.store import collections as collections_store
from embedq.worker.store.jobs import Claim


def run_upsert(rt: Runtime, claim: Claim) -> dict[str, Any]:
    request = parse_upsert_request(claim.request, Limits.of(rt.settings))
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    model, model_id = rt.collection_model(collection, request.backend, claim=claim)
    total = len(request.documents)
    progress = rt.progress(claim, total=total, done=0)
    lookup = ensure_cached(
        rt, model=model, model_id=model_id, texts=request.texts, batch_size=request.batch_size, progress=progress
    )
    summary: dict[str, Any] = {
        "collection": request.collection,
        "model_id": model_id,
        "count": total,
        "cached": len(lookup.unique) - len(lookup.missing),
        "encoded": len(lookup.missing),
    }

    def write(_skip_existing: bool) -> None:
        locked = collections_store.get_collection(conn=rt.conn, name=request.collection, lock="FOR UPDATE OF c")
        collections_store.bind_model(conn=rt.conn, collection=locked, model_id=model_id)
        summary["changed"] = collections_store.upsert_documents(
            conn=rt.conn,
            collection_id=locked.id,
            model_id=model_id,
            documents=request.documents,
            keys=lookup.keys,
        )
        finish(rt.conn, claim, summary, total)

    commit(rt.conn, write)
    return summary


def run_delete(rt: Runtime, claim: Claim) -> dict[str, Any]:
    request = parse_delete_request(claim.request, Limits.of(rt.settings))
    summary: dict[str, Any] = {"collection": request.collection, "count": len(request.ids)}

    def write(_skip_existing: bool) -> None:
        collection = collections_store.get_collection(conn=rt.conn, name=request.collection, lock="FOR UPDATE OF c")
        summary["deleted"] = collections_store.delete_documents(
            conn=rt.conn, collection_id=collection.id, ids=request.ids
        )
        finish(rt.conn, claim, summary, len(request.ids))

    commit(rt.conn, write)
    return summary
