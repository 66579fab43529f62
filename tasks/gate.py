"""The quality gate of a backend: STS Benchmark dev Spearman beside torch fp32's, on the same sentences.

A backend other than torch serves a model version only after this gate
passed for it: the Spearman correlation between the cosine similarity of each
sentence pair and its gold score, computed with the candidate's vectors, is
within ``tolerance`` (0.005 by default) of the same figure computed with
torch fp32's. Beside it the gate reports how far the candidate's vectors are
from the reference's (the cosine of each sentence's two vectors: minimum and
mean) and how long each took. Pure: two encoders and the pairs in, figures
out.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

Encoder = Callable[[list[str]], np.ndarray]
"""Texts in, one raw vector per text out."""
TOLERANCE = 0.005
DATA = "stsb_dev.tsv"


@dataclass(frozen=True)
class Pairs:
    """Sentence pairs and their gold similarity (0 to 5)."""

    first: list[str]
    second: list[str]
    scores: np.ndarray

    def sample(self, n: int) -> Pairs:
        """``n`` pairs evenly spaced over the set (all of them when ``n`` is 0 or more than there are)."""
        if n <= 0 or n >= len(self.first):
            return self
        rows = np.linspace(0, len(self.first) - 1, num=n).round().astype(np.int64)
        return Pairs([self.first[i] for i in rows], [self.second[i] for i in rows], self.scores[rows])


@dataclass(frozen=True)
class GateResult:
    """The gate's figures; ``record`` is what the ``models`` row keeps under ``metrics.gate``."""

    passed: bool
    spearman: float
    reference_spearman: float
    delta: float
    tolerance: float
    min_cosine: float
    mean_cosine: float
    pairs: int
    seconds: float
    reference_seconds: float

    def record(self, **extra: Any) -> dict[str, Any]:
        return {**asdict(self), **extra}


def stsb_dev() -> Pairs:
    """The 1,500 STS Benchmark dev pairs shipped in ``tasks/data`` (see ``STSB.md`` there)."""
    text = resources.files("tasks").joinpath("data", DATA).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    return Pairs(
        [row["sentence1"] for row in rows],
        [row["sentence2"] for row in rows],
        np.array([float(row["score"]) for row in rows], dtype=np.float64),
    )


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank (as Spearman's coefficient wants)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long arrays."""
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _timed(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    vectors = _unit(np.asarray(encoder(texts)))
    return vectors, time.perf_counter() - start


def pair_scores(vectors: np.ndarray, index: dict[str, int], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
    """The cosine similarity of each pair, from unit vectors of the unique sentences."""
    a = vectors[[index[text] for text in first]]
    b = vectors[[index[text] for text in second]]
    return np.einsum("ij,ij->i", a, b)


def run_gate(reference: Encoder, candidate: Encoder, pairs: Pairs, *, tolerance: float = TOLERANCE) -> GateResult:
    """Encode the pairs' unique sentences with both encoders and compare their STS Spearman.

    The candidate passes when its Spearman differs from the reference's by at
    most ``tolerance``, either way: one far above it computes something else.
    """
    texts = list(dict.fromkeys([*pairs.first, *pairs.second]))
    index = {text: i for i, text in enumerate(texts)}
    ref_vectors, ref_seconds = _timed(reference, texts)
    cand_vectors, cand_seconds = _timed(candidate, texts)
    ref_spearman = spearman(pair_scores(ref_vectors, index, pairs.first, pairs.second), pairs.scores)
    cand_spearman = spearman(pair_scores(cand_vectors, index, pairs.first, pairs.second), pairs.scores)
    cosines = np.einsum("ij,ij->i", ref_vectors, cand_vectors)
    delta = cand_spearman - ref_spearman
    return GateResult(
        passed=bool(abs(delta) <= tolerance),
        spearman=round(cand_spearman, 6),
        reference_spearman=round(ref_spearman, 6),
        delta=round(delta, 6),
        tolerance=tolerance,
        min_cosine=round(float(cosines.min()), 6),
        mean_cosine=round(float(cosines.mean()), 6),
        pairs=len(pairs.first),
        seconds=round(cand_seconds, 3),
        reference_seconds=round(ref_seconds, 3),
    )
