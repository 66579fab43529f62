"""Running similarity and paraphrase jobs: vectors through the cache, scores by the pure core, arrays stored."""

from __future__ import annotations

from typing import Any

import numpy as np

from api_client.schemas import Limits
from api_client.schemas_similarity import parse_paraphrases_request, parse_similarity_request
from embedq.cores import similarity
from embedq.worker.cache import Lookup, cached_vectors, commit
from embedq.worker.lease import finish
from embedq.worker.runtime import Runtime
from embedq.worker.store import arrays as arrays_store
from embedq.worker.store.jobs import Claim


def _vectors(rt: Runtime, claim: Claim, request: Any, texts: list[str]) -> tuple[Any, ...]:
    """``(raw vectors in order, lookup, model)`` of ``texts``, progress counted over them."""
    model, model_id = rt.model(request.model, request.backend)
    progress = rt.progress(claim, total=len(texts), done=0)
    vectors, lookup = cached_vectors(
        rt, model=model, model_id=model_id, texts=texts, batch_size=request.batch_size, progress=progress
    )
    return vectors, lookup, model, model_id


def _store(rt: Runtime, claim: Claim, arrays: dict[str, np.ndarray], summary: dict[str, Any], total: int) -> None:
    """The arrays and the final state, in one transaction fenced by the claim."""

    def write(_skip_existing: bool) -> None:
        arrays_store.write_arrays(conn=rt.conn, job_id=claim.job_id, arrays=arrays)
        finish(rt.conn, claim, summary, total)

    commit(rt.conn, write)


def _summary(lookup: Lookup, model: Any, model_id: int, request: Any) -> dict[str, Any]:
    return {
        "model": request.model,
        "model_id": model_id,
        "model_version": model.sha256[:12],
        "metric": request.metric,
        "cached": len(lookup.unique) - len(lookup.missing),
        "encoded": len(lookup.missing),
    }


def run_similarity(rt: Runtime, claim: Claim) -> dict[str, Any]:
    """Score queries against texts (all pairs, or pair by pair)."""
    request = parse_similarity_request(claim.request, Limits.of(rt.settings))
    texts = [*request.queries, *request.texts]
    vectors, lookup, model, model_id = _vectors(rt, claim, request, texts)
    queries, others = vectors[: len(request.queries)], vectors[len(request.queries) :]
    score = similarity.similarity_pairwise if request.pairwise else similarity.similarity
    scores = np.asarray(score(queries, others, request.metric), dtype=np.float32)
    summary = {**_summary(lookup, model, model_id, request), "pairwise": request.pairwise, "shape": list(scores.shape)}
    _store(rt, claim, {"scores": scores}, summary, len(texts))
    return summary


def run_paraphrases(rt: Runtime, claim: Claim) -> dict[str, Any]:
    """Mine the most similar pairs among the texts."""
    request = parse_paraphrases_request(claim.request, Limits.of(rt.settings))
    vectors, lookup, model, model_id = _vectors(rt, claim, request, request.texts)
    pairs = similarity.paraphrases(
        vectors, top_k=request.top_k, threshold=request.threshold, max_pairs=request.max_pairs, metric=request.metric
    )
    arrays = {
        "scores": np.array([score for score, _, _ in pairs], dtype=np.float32),
        "pairs": np.array([(i, j) for _, i, j in pairs], dtype=np.int32).reshape(-1, 2),
    }
    summary = {**_summary(lookup, model, model_id, request), "pairs": len(pairs), "threshold": request.threshold}
    _store(rt, claim, arrays, summary, len(request.texts))
    return summary
