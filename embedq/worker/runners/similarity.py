"""The similarity and paraphrases runners: vectors through the cache, scores by the pure core, arrays to store."""

from __future__ import annotations

from typing import Any

import numpy as np

from api_client.kinds.similarity import ParaphrasesRequest, SimilarityRequest
from embedq.cores import similarity
from embedq.worker.cache import Lookup, cached_vectors
from embedq.worker.runners import Outcome, runs
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


def _stored(claim: Claim, arrays: dict[str, np.ndarray], summary: dict[str, Any], total: int) -> Outcome:
    """The outcome that stores ``arrays`` as the job's output."""
    return Outcome(
        summary,
        write=lambda conn: arrays_store.write_arrays(conn=conn, job_id=claim.job_id, arrays=arrays),
        total=total,
    )


def _summary(lookup: Lookup, model: Any, model_id: int, request: Any) -> dict[str, Any]:
    return {
        "model": request.model,
        "model_id": model_id,
        "model_version": model.sha256[:12],
        "metric": request.metric,
        "cached": len(lookup.unique) - len(lookup.missing),
        "encoded": len(lookup.missing),
    }


@runs("similarity")
def run_similarity(rt: Runtime, claim: Claim, request: SimilarityRequest) -> Outcome:
    """Score queries against texts (all pairs, or pair by pair)."""
    texts = [*request.queries, *request.texts]
    vectors, lookup, model, model_id = _vectors(rt, claim, request, texts)
    queries, others = vectors[: len(request.queries)], vectors[len(request.queries) :]
    score = similarity.similarity_pairwise if request.pairwise else similarity.similarity
    scores = np.asarray(score(queries, others, request.metric), dtype=np.float32)
    summary = {**_summary(lookup, model, model_id, request), "pairwise": request.pairwise, "shape": list(scores.shape)}
    return _stored(claim, {"scores": scores}, summary, len(texts))


@runs("paraphrases")
def run_paraphrases(rt: Runtime, claim: Claim, request: ParaphrasesRequest) -> Outcome:
    """Mine the most similar pairs among the texts."""
    vectors, lookup, model, model_id = _vectors(rt, claim, request, request.texts)
    pairs = similarity.paraphrases(
        vectors, top_k=request.top_k, threshold=request.threshold, max_pairs=request.max_pairs, metric=request.metric
    )
    arrays = {
        "scores": np.array([score for score, _, _ in pairs], dtype=np.float32),
        "pairs": np.array([(i, j) for _, i, j in pairs], dtype=np.int32).reshape(-1, 2),
    }
    summary = {**_summary(lookup, model, model_id, request), "pairs": len(pairs), "threshold": request.threshold}
    return _stored(claim, arrays, summary, len(request.texts))
