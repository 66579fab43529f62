"""The document runners: upsert and delete, their documents written with the job's final state.

An upsert embeds its texts through the cache first (unchanged texts cost
nothing); its outcome then, holding the collection row ``FOR UPDATE``, binds
the collection to the worker's model version on its first upsert (and
refuses any other version after that) and writes the documents: each change
takes a new ``seq``, which is what makes it part of the delta searched beside
the active index. Writers of one collection take turns on its row, so its
``seq`` values commit in order: a reader that has seen ``seq`` N has seen
every change below it.

The summary's ``changed`` and ``deleted`` are counted just before the job's
final transaction, against the documents as they are then.
"""

from __future__ import annotations

import psycopg

from api_client.kinds.collections import DeleteRequest, UpsertRequest
from embedq.worker.cache import ensure_cached
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime
from embedq.worker.store import collections as collections_store
from embedq.worker.store.jobs import Claim


@runs("upsert")
def run_upsert(rt: Runtime, claim: Claim, request: UpsertRequest) -> Outcome:
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    model, model_id = rt.collection_model(collection, request.backend, claim=claim)
    total = len(request.documents)
    progress = rt.progress(claim, total=total, done=0)
    lookup = ensure_cached(
        rt, model=model, model_id=model_id, texts=request.texts, batch_size=request.batch_size, progress=progress
    )
    summary = {
        "collection": request.collection,
        "model_id": model_id,
        "count": total,
        "cached": len(lookup.unique) - len(lookup.missing),
        "encoded": len(lookup.missing),
        "changed": collections_store.changed_documents(
            conn=rt.conn, collection_id=collection.id, model_id=model_id, documents=request.documents, keys=lookup.keys
        ),
    }

    def write(conn: psycopg.Connection) -> None:
        locked = collections_store.get_collection(conn=conn, name=request.collection, lock="FOR UPDATE OF c")
        collections_store.bind_model(conn=conn, collection=locked, model_id=model_id)
        collections_store.upsert_documents(
            conn=conn, collection_id=locked.id, model_id=model_id, documents=request.documents, keys=lookup.keys
        )

    return Outcome(summary, write=write, total=total)


@runs("delete")
def run_delete(rt: Runtime, _claim: Claim, request: DeleteRequest) -> Outcome:
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    summary = {
        "collection": request.collection,
        "count": len(request.ids),
        "deleted": collections_store.live_among(conn=rt.conn, collection_id=collection.id, ids=request.ids),
    }

    def write(conn: psycopg.Connection) -> None:
        locked = collections_store.get_collection(conn=conn, name=request.collection, lock="FOR UPDATE OF c")
        collections_store.delete_documents(conn=conn, collection_id=locked.id, ids=request.ids)

    return Outcome(summary, write=write, total=len(request.ids))
