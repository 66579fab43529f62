"""Searching a collection: queries encoded, searched in the active index and the delta, filtered.

The collection row names the model version and the active index version in
one read, so a search answers from one version even while a reindex swaps
them. A filter is equality on metadata keys (``metadata @> filter`` in
PostgreSQL, so ``1`` equals ``1.0`` but not ``true``): when at most
``filter_exact_max`` documents match, they are scored exactly; otherwise
candidates are over-fetched from the index, four times more each round, until
every query has ``k`` hits that pass or the collection is exhausted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from api_client.errors import ModelMismatch
from api_client.kinds.collections import SearchRequest
from api_client.postprocess import truncate_and_normalize
from embedq.cores import index as index_core
from embedq.cores.encode import encode
from embedq.cores.rerank import rerank
from embedq.cores.search import merge
from embedq.worker.indexes import Delta, LoadedIndex
from embedq.worker.runtime import Runtime
from embedq.worker.store import collections as collections_store
from embedq.worker.store.collections import Collection

Ranked = list[list[tuple[str, float]]]


def search(rt: Runtime, request: SearchRequest) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """The hits of each query (best first) and the summary of the search; nothing written."""
    collection = collections_store.get_collection(conn=rt.conn, name=request.collection)
    ranked: Ranked = [[] for _ in request.queries]
    if collection.model_id is not None:
        queries = _encode_queries(rt, collection, request)
        ranked = _rank(rt, collection, request, queries)
    retrieval: dict[tuple[int, str], float] = {}
    if request.rerank is not None:
        ranked, retrieval = _rerank(rt, collection, request, ranked)
    hits = _hits(rt, collection, request, ranked, retrieval)
    summary = {
        "collection": request.collection,
        "queries": len(request.queries),
        "k": request.k,
        "index_version": collection.index_version,
        "index_id": collection.index_id,
        "model_id": collection.model_id,
        "hits": sum(len(query_hits) for query_hits in hits),
    }
    if request.filter and not summary["hits"]:
        matched = collections_store.matching(conn=rt.conn, collection_id=collection.id, where=request.filter, limit=0)
        if matched == []:  # no document has that metadata: say so, and which keys there are
            summary["filter_matched"] = 0
            summary["metadata_keys"] = collections_store.metadata_keys(conn=rt.conn, collection_id=collection.id)
    return hits, summary


def _encode_queries(rt: Runtime, collection: Collection, request: SearchRequest) -> np.ndarray:
    model, model_id = rt.collection_model(collection)
    if model_id != collection.model_id:
        raise ModelMismatch(
            f"collection {collection.name!r} holds vectors of model version {collection.model_id}; this worker "
            f"computes {collection.model!r} as version {model_id} (another dtype or backend)",
            detail={"collection": collection.name, "model_id": collection.model_id, "offered": model_id},
        )
    raw = encode(model.model, request.queries, batch_size=request.batch_size)
    return truncate_and_normalize(raw, truncate_dim=None, normalize=collection.normalize)


def _candidates(
    index: LoadedIndex | None, delta: Delta, queries: np.ndarray, k: int, threshold: float | None
) -> Ranked:
    """The best ``k`` per query over the index (stale entries dropped) and the delta."""
    stale = delta.changed.keys()
    index_hits = None
    if index is not None and index.index.ntotal:
        fetch = min(k + len(stale), int(index.index.ntotal))
        index_hits = index_core.search(index.index, queries, fetch)  # its efSearch / nprobe are saved with it
    delta_ids, delta_vectors = delta.live()
    delta_hits = index_core.exact_search(delta_vectors, queries, min(k, len(delta_ids))) if delta_ids else None
    return merge(
        index_hits=index_hits,
        index_ids=index.ids if index is not None else [],
        stale=stale,
        delta_hits=delta_hits,
        delta_ids=delta_ids,
        k=k,
        threshold=threshold,
    )


def _rerank(
    rt: Runtime, collection: Collection, request: SearchRequest, ranked: Ranked
) -> tuple[Ranked, dict[tuple[int, str], float]]:
    """The candidates rescored by the request's cross-encoder, best ``k`` kept; also the index scores."""
    assert request.rerank is not None
    model = rt.cross_encoder(request.rerank)
    ids = sorted({doc_id for query_hits in ranked for doc_id, _ in query_hits})
    texts = collections_store.details(conn=rt.conn, collection_id=collection.id, ids=ids) if ids else {}
    retrieval: dict[tuple[int, str], float] = {}
    reranked: Ranked = []
    for row, (query, query_hits) in enumerate(zip(request.queries, ranked, strict=True)):
        kept = [doc_id for doc_id, _ in query_hits if doc_id in texts]
        retrieval.update({(row, doc_id): score for doc_id, score in query_hits})
        scores = rerank(model, query, [texts[doc_id][0] for doc_id in kept], batch_size=request.batch_size)
        order = sorted(zip(kept, scores.tolist(), strict=True), key=lambda item: (-item[1], item[0]))
        reranked.append(order[: request.k])
    return reranked, retrieval


def _rank(rt: Runtime, collection: Collection, request: SearchRequest, queries: np.ndarray) -> Ranked:
    """The best ``k`` (or ``rerank_top`` candidates for a rerank) per query."""
    if request.rerank is not None:
        request = request.model_copy(update={"k": request.rerank_top})
    index = rt.indexes.get(collection)
    delta = rt.deltas.get(rt.conn, collection)
    if not request.filter:
        return _candidates(index, delta, queries, k=request.k, threshold=request.threshold)
    subset = collections_store.matching(
        conn=rt.conn, collection_id=collection.id, where=request.filter, limit=rt.settings.filter_exact_max
    )
    if subset is not None:
        if not subset:
            return [[] for _ in request.queries]
        ids, raw = collections_store.vectors_of(conn=rt.conn, collection_id=collection.id, ids=subset)
        vectors = truncate_and_normalize(raw, truncate_dim=None, normalize=collection.normalize)
        hits = index_core.exact_search(vectors, queries, min(request.k, len(ids)))
        return merge(
            index_hits=None, index_ids=[], stale=(), delta_hits=hits, delta_ids=ids, k=request.k,
            threshold=request.threshold,
        )  # fmt: skip
    return _over_fetch(rt, collection, request, queries, index=index, delta=delta)


def _over_fetch(
    rt: Runtime,
    collection: Collection,
    request: SearchRequest,
    queries: np.ndarray,
    *,
    index: LoadedIndex | None,
    delta: Delta,
) -> Ranked:
    """Candidates four times more each round until every query has ``k`` that pass the filter."""
    assert request.filter is not None
    total = collections_store.live_count(conn=rt.conn, collection_id=collection.id)
    fetch = request.k * 4
    while True:
        ranked = _candidates(index, delta, queries, k=fetch, threshold=request.threshold)
        ids = sorted({doc_id for query_hits in ranked for doc_id, _ in query_hits})
        passing = collections_store.allowed(conn=rt.conn, collection_id=collection.id, ids=ids, where=request.filter)
        kept = [[hit for hit in query_hits if hit[0] in passing][: request.k] for query_hits in ranked]
        if all(len(query_hits) >= request.k for query_hits in kept) or fetch >= total:
            return kept
        fetch *= 4


def _hits(
    rt: Runtime,
    collection: Collection,
    request: SearchRequest,
    ranked: Ranked,
    retrieval: dict[tuple[int, str], float],
) -> list[list[dict[str, Any]]]:
    """Each hit as ``{"id", "score"}`` plus the text and metadata the request includes (and, reranked,
    ``retrieval_score``)."""
    ids = sorted({doc_id for query_hits in ranked for doc_id, _ in query_hits})
    details = collections_store.details(conn=rt.conn, collection_id=collection.id, ids=ids) if ids else {}
    out: list[list[dict[str, Any]]] = []
    for row, query_hits in enumerate(ranked):
        rows = []
        for doc_id, score in query_hits:
            if doc_id not in details:  # deleted between the ranking and this read
                continue
            hit: dict[str, Any] = {"id": doc_id, "score": score}
            if (row, doc_id) in retrieval:
                hit["retrieval_score"] = retrieval[(row, doc_id)]
            text, metadata = details[doc_id]
            if "text" in request.include:
                hit["text"] = text
            if "metadata" in request.include:
                hit["metadata"] = metadata
            rows.append(hit)
        out.append(rows)
    return out
