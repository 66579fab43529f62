"""Evaluating an embedding model on held-out pairs, before and after fine-tuning.

Two shapes of evaluation data, matching the two training losses:

- scored pairs ``(text1, text2, score)``: the cosine of each pair's vectors against the scores, as
  Spearman and Pearson correlations (the STS Benchmark's measure);
- unscored pairs ``(anchor, positive)``: retrieval, each anchor searching among all the pairs' distinct
  positives by cosine: ``accuracy@1`` (its own positive ranks first) and ``mrr@10`` (mean reciprocal rank,
  0 past rank 10). A candidate scoring the same as the right one ranks ahead of it, so ties never help.

Vectors are computed once per distinct text; a Matryoshka dimension ``d`` keeps the first ``d`` components
and renormalizes them. Figures are plain floats (``None`` where a correlation is undefined).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from api_client.postprocess import unit

MRR_CUTOFF = 10


def evaluate(model: Any, pairs: Sequence[tuple]) -> dict[str, float | None]:
    """The figures of ``model`` on ``pairs`` at its full dimension (see the module docstring)."""
    return evaluate_dims(model, pairs, [None])["full"]


def evaluate_dims(model: Any, pairs: Sequence[tuple], dims: Sequence[int | None]) -> dict[str, dict[str, float | None]]:
    """The figures at each of ``dims`` (``None``: the full dimension, keyed ``"full"``), from one encoding."""
    texts = list(dict.fromkeys(text for pair in pairs for text in pair[:2]))
    vectors = np.asarray(
        model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False), dtype=np.float64
    )
    row = {text: i for i, text in enumerate(texts)}
    return {"full" if dim is None else str(dim): _figures(_unit(vectors, dim), row, pairs) for dim in dims}


def _unit(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    return unit(vectors if dim is None else vectors[:, :dim])


def _figures(vectors: np.ndarray, row: dict[str, int], pairs: Sequence[tuple]) -> dict[str, float | None]:
    first = vectors[[row[pair[0]] for pair in pairs]]
    if len(pairs[0]) == 3:
        second = vectors[[row[pair[1]] for pair in pairs]]
        cosines = np.sum(first * second, axis=1)
        scores = np.array([float(pair[2]) for pair in pairs])
        return {"spearman": _correlation(_ranks(cosines), _ranks(scores)), "pearson": _correlation(cosines, scores)}
    positives = list(dict.fromkeys(pair[1] for pair in pairs))
    column = {text: i for i, text in enumerate(positives)}
    sims = first @ vectors[[row[text] for text in positives]].T
    right = sims[np.arange(len(pairs)), [column[pair[1]] for pair in pairs]]
    ranks = np.sum(sims >= right[:, None], axis=1) - 1
    reciprocal = np.where(ranks < MRR_CUTOFF, 1.0 / (ranks + 1), 0.0)
    return {"accuracy@1": float(np.mean(ranks == 0)), f"mrr@{MRR_CUTOFF}": float(np.mean(reciprocal))}


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their average rank (as Spearman's correlation needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranks) / counts)[group]


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
