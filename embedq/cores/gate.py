"""The quality gate of a backend: what users decide with its vectors, beside torch fp32's, on shipped data.

A backend other than torch serves a model version only after this gate
passed for it. It judges the candidate against torch fp32 (the reference)
on data the project ships (``embedq/cores/data``, see ``GATE.md`` there):

- **sts**: STS Benchmark dev Spearman within ``tolerance`` (0.005) of the
  reference's, with the mean and largest |Δcos| over the pairs beside it;
- **invariance**: a text's vector alone and inside mixed-length batches
  differ by at most the precision's tolerance per component
  (``embedq.cores.backends.INVARIANCE``: fp32 1e-5, bf16 5e-3, int8 identical), so
  no vector depends on its batch-mates (dynamic int8 fails here);
- **paraphrases**: the pairs scoring at least 0.8 among 2,000 support-desk
  texts, recall and precision against the reference's pairs ≥ 0.95;
- **search**: the top 10 of exact cosine search over 20,000 documents for
  1,000 queries, mean overlap with the reference's ≥ 0.97.

Beside the verdict it measures speed (bulk texts per second at batch 64 and
one text's latency) for the reference and the candidate, from which the
fastest passing backend is promoted. Pure: encoders and data in, figures out.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import numpy as np

from api_client import postprocess

Encoder = Callable[[list[str], int], np.ndarray]
"""``(texts, batch_size)`` in, one raw float32 vector per text out (in input order)."""
TOLERANCE = 0.005
PARAPHRASE_THRESHOLD = 0.8
MIN_PARAPHRASE = 0.95
MIN_OVERLAP = 0.97
TOP_K = 10
BATCH = 64
LATENCY_RUNS = 30


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
        rows = _spread(len(self.first), n)
        return Pairs([self.first[i] for i in rows], [self.second[i] for i in rows], self.scores[rows])

    def texts(self) -> list[str]:
        return list(dict.fromkeys([*self.first, *self.second]))


@dataclass(frozen=True)
class GateData:
    """What the gate encodes: STS pairs, paraphrase texts, documents and queries, invariance probes."""

    pairs: Pairs
    paraphrases: list[str]
    documents: list[str]
    queries: list[str]
    probes: list[str]
    """Texts whose vector alone is compared with their vectors inside mixed batches."""
    fillers: list[str]
    """Batch-mates of the probes: long and short texts that change the batches' padding."""

    def sample(self, *, pairs: int = 0, paraphrases: int = 0, documents: int = 0, queries: int = 0) -> GateData:
        """A smaller gate (for tests): each count 0 keeps all of that part."""
        return replace(
            self,
            pairs=self.pairs.sample(pairs),
            paraphrases=_take(self.paraphrases, paraphrases),
            documents=_take(self.documents, documents),
            queries=_take(self.queries, queries),
        )

    def sizes(self) -> dict[str, int]:
        return {
            "pairs": len(self.pairs.first),
            "paraphrase_texts": len(self.paraphrases),
            "documents": len(self.documents),
            "queries": len(self.queries),
            "probes": len(self.probes),
        }


def _spread(total: int, n: int) -> np.ndarray:
    return np.linspace(0, total - 1, num=n).round().astype(np.int64)


def _take(texts: list[str], n: int) -> list[str]:
    return texts if n <= 0 or n >= len(texts) else [texts[i] for i in _spread(len(texts), n)]


def _lines(name: str) -> list[str]:
    text = resources.files("embedq.cores").joinpath("data", name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


def stsb_dev() -> Pairs:
    """The 1,500 STS Benchmark dev pairs shipped in ``embedq/cores/data`` (see ``STSB.md`` there)."""
    text = resources.files("embedq.cores").joinpath("data", "stsb_dev.tsv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    return Pairs(
        [row["sentence1"] for row in rows],
        [row["sentence2"] for row in rows],
        np.array([float(row["score"]) for row in rows], dtype=np.float64),
    )


def shipped() -> GateData:
    """The whole gate's data, as shipped in ``embedq/cores/data``."""
    paraphrases = _lines("gate_paraphrases.txt")
    documents = _lines("gate_documents.txt")
    pairs = stsb_dev()
    probes = [*paraphrases[:16], *documents[:8], *pairs.first[:8]]
    long_texts = sorted(pairs.texts(), key=len, reverse=True)[:8]
    fillers = [*long_texts, " ".join(long_texts[:6]), *documents[-8:]]
    return GateData(pairs, paraphrases, documents, _lines("gate_queries.txt"), probes, fillers)


# ---------------------------------------------------------------- measures


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


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, in float64 (zero rows stay zero)."""
    return postprocess.unit(np.asarray(vectors, dtype=np.float64))


def pair_scores(vectors: np.ndarray, index: dict[str, int], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
    """The cosine similarity of each pair, from unit vectors of the unique sentences."""
    a = vectors[[index[text] for text in first]]
    b = vectors[[index[text] for text in second]]
    return np.einsum("ij,ij->i", a, b)


def paraphrase_pairs(vectors: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, whose cosine is at least ``threshold`` (unit vectors in)."""
    scores = vectors @ vectors.T
    rows, cols = np.nonzero(np.triu(scores >= threshold, k=1))
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def top_k(queries: np.ndarray, documents: np.ndarray, k: int) -> np.ndarray:
    """Indices of each query's ``k`` best documents by dot product (unit vectors: cosine), best first."""
    scores = queries @ documents.T
    best = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def invariance(encoder: Encoder, probes: list[str], fillers: list[str]) -> tuple[float, float, int]:
    """``(max |Δ| per component, min cosine, batches)`` of each probe alone vs inside mixed batches.

    Each probe is encoded alone (a batch of one, no padding), then inside
    three batches of other compositions: beside long texts (much padding),
    beside short ones, and among the other probes in reverse order.
    """
    alone = np.stack([np.asarray(encoder([text], 1))[0] for text in probes])
    batches = [[*fillers[: len(fillers) // 2], *probes], [*probes[::-1]], [*probes, *fillers[len(fillers) // 2 :]]]
    worst, min_cos = 0.0, 1.0
    for batch in batches:
        vectors = np.asarray(encoder(batch, len(batch)))
        for row, text in enumerate(batch):
            if text not in probes:
                continue
            mine = alone[probes.index(text)]
            worst = max(worst, float(np.abs(vectors[row] - mine).max()))
            min_cos = min(min_cos, float(unit(vectors[row : row + 1])[0] @ unit(mine[None])[0]))
    return worst, min_cos, len(batches)


@dataclass
class Measured:
    """One encoder's vectors of the gate's texts, and how fast it made them.

    ``stopped``: the invariance check failed its tolerance, so nothing else was encoded.
    """

    sts: np.ndarray
    paraphrases: np.ndarray
    documents: np.ndarray
    queries: np.ndarray
    texts_per_second: float
    one_text_ms: float
    invariance: tuple[float, float, int] = (0.0, 1.0, 0)
    seconds: float = 0.0
    stopped: bool = False


def speed(encoder: Encoder, texts: list[str]) -> float:
    """Texts per second of ``encoder`` over ``texts`` at batch 64 (one warm-up batch first)."""
    encoder(texts[:BATCH], BATCH)
    started = time.perf_counter()
    encoder(texts, BATCH)
    elapsed = time.perf_counter() - started
    return len(texts) / elapsed if elapsed > 0 else 0.0


def measure(encoder: Encoder, data: GateData, *, probe: bool = True, stop_above: float | None = None) -> Measured:
    """Encode every text of the gate with ``encoder`` (documents at batch 64, timed).

    With ``probe`` the invariance check runs first; past ``stop_above`` (the
    tolerance) nothing else is encoded: the verdict is already known.
    """
    started = time.perf_counter()
    checked = invariance(encoder, data.probes, data.fillers) if probe else (0.0, 1.0, 0)
    if stop_above is not None and checked[0] > stop_above:
        empty = np.zeros((0, 0))
        return Measured(empty, empty, empty, empty, 0.0, 0.0, checked, time.perf_counter() - started, stopped=True)
    sts = unit(encoder(data.pairs.texts(), BATCH))
    paraphrases = unit(encoder(data.paraphrases, BATCH))
    queries = unit(encoder(data.queries, BATCH))
    bulk_start = time.perf_counter()
    documents = unit(encoder(data.documents, BATCH))
    bulk = time.perf_counter() - bulk_start
    latencies = []
    for text in data.queries[:LATENCY_RUNS]:
        one = time.perf_counter()
        encoder([text], 1)
        latencies.append(time.perf_counter() - one)
    return Measured(
        sts=sts,
        paraphrases=paraphrases,
        documents=documents,
        queries=queries,
        texts_per_second=len(data.documents) / bulk if bulk > 0 else 0.0,
        one_text_ms=float(np.median(latencies)) * 1000 if latencies else 0.0,
        invariance=checked,
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class Criteria:
    """The gate's thresholds."""

    tolerance: float = TOLERANCE
    invariance: float = 1e-5
    paraphrase_threshold: float = PARAPHRASE_THRESHOLD
    min_paraphrase: float = MIN_PARAPHRASE
    min_overlap: float = MIN_OVERLAP
    k: int = TOP_K


@dataclass(frozen=True)
class GateResult:
    """The gate's figures; ``record`` is what the ``models`` row keeps under ``metrics.gate``."""

    passed: bool
    failed: list[str]
    sts: dict[str, Any]
    invariance: dict[str, Any]
    paraphrases: dict[str, Any]
    search: dict[str, Any]
    speed: dict[str, Any]
    sizes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, **extra: Any) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "spearman": self.sts.get("spearman"),
            "reference_spearman": self.sts.get("reference"),
            "delta": self.sts.get("delta"),
            "tolerance": self.sts.get("tolerance"),
            "sts": self.sts,
            "invariance": self.invariance,
            "paraphrases": self.paraphrases,
            "search": self.search,
            "speed": self.speed,
            "sizes": self.sizes,
            "seconds": round(self.seconds, 3),
            **extra,
        }


def _sts(reference: Measured, candidate: Measured, pairs: Pairs, tolerance: float) -> dict[str, Any]:
    index = {text: i for i, text in enumerate(pairs.texts())}
    ref = pair_scores(reference.sts, index, pairs.first, pairs.second)
    cand = pair_scores(candidate.sts, index, pairs.first, pairs.second)
    ref_rho, cand_rho = spearman(ref, pairs.scores), spearman(cand, pairs.scores)
    gap = np.abs(cand - ref)
    return {
        "spearman": round(cand_rho, 6),
        "reference": round(ref_rho, 6),
        "delta": round(cand_rho - ref_rho, 6),
        "tolerance": tolerance,
        "mean_dcos": float(f"{gap.mean():.3g}"),
        "max_dcos": float(f"{gap.max():.3g}"),
        "passed": bool(abs(cand_rho - ref_rho) <= tolerance),
    }


def _paraphrases(reference: Measured, candidate: Measured, criteria: Criteria) -> dict[str, Any]:
    ref = paraphrase_pairs(reference.paraphrases, criteria.paraphrase_threshold)
    cand = paraphrase_pairs(candidate.paraphrases, criteria.paraphrase_threshold)
    common = len(ref & cand)
    recall = common / len(ref) if ref else 1.0
    precision = common / len(cand) if cand else 1.0
    return {
        "threshold": criteria.paraphrase_threshold,
        "reference_pairs": len(ref),
        "pairs": len(cand),
        "recall": round(recall, 4),
        "precision": round(precision, 4),
        "min": criteria.min_paraphrase,
        "passed": recall >= criteria.min_paraphrase and precision >= criteria.min_paraphrase,
    }


def _search(reference: Measured, candidate: Measured, criteria: Criteria) -> dict[str, Any]:
    k = min(criteria.k, len(reference.documents))
    ref = top_k(reference.queries, reference.documents, k)
    cand = top_k(candidate.queries, candidate.documents, k)
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref.tolist(), cand.tolist(), strict=True)]))
    return {
        "k": k,
        "overlap": round(overlap, 4),
        "min": criteria.min_overlap,
        "passed": overlap >= criteria.min_overlap,
    }


def judge(reference: Measured, candidate: Measured, data: GateData, criteria: Criteria) -> GateResult:
    """The verdict on ``candidate`` against ``reference`` (both measured on ``data``)."""
    worst, min_cos, batches = candidate.invariance
    skipped = {"passed": False, "skipped": "the invariance check failed first"}
    checks = {
        "sts": skipped if candidate.stopped else _sts(reference, candidate, data.pairs, criteria.tolerance),
        "invariance": {
            "max_abs": float(f"{worst:.3g}"),
            "min_cosine": round(min_cos, 7),
            "tolerance": criteria.invariance,
            "probes": len(data.probes),
            "batches": batches,
            "passed": worst <= criteria.invariance,
        },
        "paraphrases": skipped if candidate.stopped else _paraphrases(reference, candidate, criteria),
        "search": skipped if candidate.stopped else _search(reference, candidate, criteria),
    }
    failed = [name for name, check in checks.items() if not check["passed"] and "skipped" not in check]
    speed = {
        "texts_per_second": round(candidate.texts_per_second, 1),
        "reference_texts_per_second": round(reference.texts_per_second, 1),
        "ratio": round(candidate.texts_per_second / reference.texts_per_second, 3)
        if reference.texts_per_second
        else None,
        "one_text_ms": round(candidate.one_text_ms, 3),
        "reference_one_text_ms": round(reference.one_text_ms, 3),
    }
    return GateResult(
        passed=not failed,
        failed=failed,
        speed=speed,
        sizes=data.sizes(),
        seconds=candidate.seconds,
        **checks,
    )


def run_gate(reference: Encoder, candidate: Encoder, data: GateData, criteria: Criteria | None = None) -> GateResult:
    """Measure both encoders on ``data`` and judge the candidate (see the module docstring)."""
    criteria = criteria or Criteria()
    measured = measure(candidate, data, stop_above=criteria.invariance)
    return judge(measure(reference, data, probe=False), measured, data, criteria)
