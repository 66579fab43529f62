"""The similarity and paraphrase cores: raw vectors in, scores out.

Each function hands the vectors to the sentence-transformers function that a
direct call would use (``SimilarityFunction.to_similarity_fn`` and
``to_similarity_pairwise_fn``, ``util.paraphrase_mining_embeddings``), so a
job returns the same floats, pairs and order as the library on the same
embeddings. Vectors are the raw float32 outputs of the encode core, not
re-normalized: the metric decides what to do with their length.

Library behaviour that ``paraphrases`` keeps, because it must match
``util.paraphrase_mining``:

- A pair is ``(score, i, j)`` with ``i < j``; pairs come best first, and
  equal scores keep the order of the library's priority queue (ascending
  query index, then corpus index, of the entry that survived).
- Only scores above -1 are kept (the library's starting ``min_score``): with
  "euclidean" and "manhattan" (negative distances) farther pairs never appear.
- ``max_pairs`` bounds the directed entries kept (``max_pairs - 1`` of them,
  ``(i, j)`` and ``(j, i)`` both counting), so fewer distinct pairs come back.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
from sentence_transformers import SimilarityFunction
from sentence_transformers.util import paraphrase_mining_embeddings

from api_client.errors import BadRequest

METRICS = ("cosine", "dot", "euclidean", "manhattan")


def check_metric(metric: object) -> str:
    """The metric name, or a ``BadRequest`` naming the allowed ones."""
    if not isinstance(metric, str) or metric not in METRICS:
        allowed = ", ".join(METRICS)
        raise BadRequest(f"metric: unknown metric {metric!r} (allowed: {allowed})", detail={"field": "metric"})
    return metric


def check_paraphrase_options(*, top_k: object, threshold: object, max_pairs: object) -> None:
    """Reject options ``paraphrases`` cannot honour, before any text is encoded."""
    for field, value in (("top_k", top_k), ("max_pairs", max_pairs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"{field}: expected a positive integer, got {value!r}", detail={"field": field})
    if threshold is not None and (
        not isinstance(threshold, int | float) or isinstance(threshold, bool) or not math.isfinite(threshold)
    ):
        problem = f"expected a finite number or null, got {threshold!r}"
        raise BadRequest(f"threshold: {problem}", detail={"field": "threshold"})


def similarity(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Float32 ``[len(a), len(b)]`` scores, as ``SentenceTransformer.similarity`` with ``similarity_fn_name=metric``."""
    fn = SimilarityFunction.to_similarity_fn(check_metric(metric))
    left, right = _tensor(a), _tensor(b)
    _check_dims(left, right)
    return _array(fn(left, right))


def similarity_pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Float32 ``[n]`` scores of ``a[k]`` with ``b[k]``, as ``SentenceTransformer.similarity_pairwise``."""
    fn = SimilarityFunction.to_similarity_pairwise_fn(check_metric(metric))
    left, right = _tensor(a), _tensor(b)
    _check_dims(left, right)
    if len(left) != len(right):
        # The library would broadcast a single row against all of the other side.
        raise ValueError(f"similarity_pairwise needs as many rows in a as in b, got {len(left)} and {len(right)}")
    return _array(fn(left, right))


def paraphrases(
    vectors: np.ndarray, *, top_k: int, threshold: float | None, max_pairs: int, metric: str = "cosine"
) -> list[tuple[float, int, int]]:
    """The pairs ``util.paraphrase_mining`` returns for these vectors, then only those scoring ``>= threshold``.

    The threshold is applied after ``max_pairs``, as a caller filtering the
    library's list would; the chunk sizes stay at the library's defaults
    because ties at the ``max_pairs`` cut depend on the order pairs are seen.
    """
    fn = SimilarityFunction.to_similarity_fn(check_metric(metric))
    check_paraphrase_options(top_k=top_k, threshold=threshold, max_pairs=max_pairs)
    pairs = paraphrase_mining_embeddings(_tensor(vectors), top_k=top_k, max_pairs=max_pairs, score_function=fn)
    if threshold is not None:
        pairs = [pair for pair in pairs if pair[0] >= threshold]
    # The library already gives Python floats and ints (from ``tolist()``); only the container changes.
    return cast("list[tuple[float, int, int]]", [tuple(pair) for pair in pairs])


def _tensor(vectors: np.ndarray) -> torch.Tensor:
    """A float32 ``[n, dim]`` tensor over the array, copied only when it must be (dtype, layout, read-only)."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a [n, dim] array of vectors, got shape {array.shape}")
    if not array.flags.writeable:
        array = array.copy()  # torch.from_numpy warns on read-only memory
    return torch.from_numpy(array)


def _check_dims(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"vectors of different dimensions: {a.shape[1]} and {b.shape[1]}")


def _array(scores: torch.Tensor) -> np.ndarray:
    return scores.detach().cpu().numpy().astype(np.float32, copy=False)
