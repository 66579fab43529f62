"""Held-out evaluation of a classifier: the split, the abstain threshold, the report.

Plain arrays and values in, JSON-safe values out. ``embedq.cores.classifiers``
re-exports these functions; ``held_out`` runs a head on held-out vectors and
chooses the threshold and reports there in one call.

The threshold is a confidence (the best label's score) below which the
classifier abstains and leaves the text to a person. It is chosen on held-out
examples by one of two rules:

- ``min_answered`` (the default, 0.95): the highest threshold at which at
  least that fraction of held-out examples is still answered.
- ``target_precision``: the lowest threshold (so the most answered) whose
  answered accuracy reaches the target. When no threshold reaches it, the
  threshold with the best answered accuracy is returned (the most answered
  among equals) with ``"met": False``: the target is not promised, and the
  caller should say so.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from api_client.errors import BadRequest
from embedq.cores.heads import Head

DEFAULT_MIN_ANSWERED = 0.95


def eval_split(
    labels: Sequence[str], eval_split: float, *, seed: int, min_train: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(train, eval)`` index arrays, each sorted.

    Each label sends ``round(count * eval_split)`` of its examples to eval,
    but never so many that fewer than ``min_train`` stay in train (pass
    ``MIN_EXAMPLES[method]``); so a label with ``min_train`` examples or fewer
    has none in eval. ``eval_split=0`` gives an empty eval. The draw of each
    label depends only on the seed, the label and its examples' positions, so
    adding another label does not reshuffle the rest.
    """
    if not isinstance(eval_split, int | float) or not 0 <= eval_split < 1:
        raise BadRequest(f"eval_split: expected a number in [0, 1), got {eval_split!r}", detail={"field": "eval_split"})
    names = np.asarray([str(label) for label in labels])
    train: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    held: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    for name in sorted(set(names.tolist())):
        key = int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:8], "big")
        members = np.random.default_rng([seed, key]).permutation(np.flatnonzero(names == name))
        n_eval = min(math.floor(len(members) * eval_split + 0.5), max(len(members) - min_train, 0))
        held.append(members[:n_eval])
        train.append(members[n_eval:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _unit_interval(field: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
        raise BadRequest(f"{field}: expected a number in (0, 1], got {value!r}", detail={"field": field})
    return float(value)


def choose_threshold(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    min_answered: float | None = None,
    target_precision: float | None = None,
) -> dict[str, Any]:
    """``{"threshold", "coverage", "answered_accuracy", "rule", "target", "met"}`` from held-out predictions.

    ``confidence[i]`` is the best score of held-out example ``i`` and
    ``correct[i]`` whether that label was right. An example is answered when
    its confidence is ``>= threshold``. Give at most one of the two rules (see
    the module docstring); with no held-out examples the threshold is 0 (never
    abstain) and ``rule`` is "no_eval".
    """
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    right = np.asarray(correct, dtype=bool).ravel()
    if len(conf) != len(right):
        raise BadRequest(f"correct: {len(right)} values for {len(conf)} confidences", detail={"field": "correct"})
    if min_answered is not None and target_precision is not None:
        raise BadRequest("give min_answered or target_precision, not both", detail={"field": "target_precision"})
    if target_precision is None:
        share = DEFAULT_MIN_ANSWERED if min_answered is None else min_answered
        rule, target = "min_answered", _unit_interval("min_answered", share)
    else:
        rule, target = "target_precision", _unit_interval("target_precision", target_precision)
    if len(conf) == 0:
        return {
            "threshold": 0.0,
            "coverage": None,
            "answered_accuracy": None,
            "rule": "no_eval",
            "target": target,
            "met": None,
        }
    order = np.argsort(-conf, kind="stable")
    ranked = conf[order]
    # A threshold at a confidence answers every example with that confidence or more: the ends of tie runs.
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    answered = ends + 1
    accuracy = np.cumsum(right[order])[ends] / answered
    if rule == "min_answered":
        i = int(np.argmax(answered >= math.ceil(target * len(conf) - 1e-9)))
        met = True
    else:
        reaching = np.flatnonzero(accuracy >= target)
        met = len(reaching) > 0
        i = int(reaching[-1]) if met else int(np.flatnonzero(accuracy == accuracy.max())[-1])
    return {
        "threshold": float(ranked[ends[i]]),
        "coverage": float(answered[i] / len(conf)),
        "answered_accuracy": float(accuracy[i]),
        "rule": rule,
        "target": target,
        "met": met,
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def report(
    true: Sequence[str], predicted: Sequence[str], confidence: np.ndarray, labels: Sequence[str], threshold: dict
) -> dict[str, Any]:
    """Held-out metrics as plain JSON values.

    ``accuracy``; ``macro_f1``, the mean F1 over the labels that occur in
    ``true`` or ``predicted`` (scikit-learn's rule); ``per_class``
    ``{label: {precision, recall, f1, support}}`` for every label (0 where
    undefined); ``confusion`` ``{"labels", "matrix"}`` with rows the true
    label and columns the predicted; and, at ``threshold["threshold"]``,
    ``coverage`` and ``answered_accuracy`` on these examples. Metrics are
    None when there are no examples.
    """
    names = [str(label) for label in labels]
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(label) for label in [*true, *predicted]} - index.keys())
    if unknown or len(true) != len(predicted) or len(true) != len(np.ravel(confidence)):
        raise BadRequest(f"report: mismatched inputs (unknown labels {unknown[:10]})", detail={"field": "labels"})
    t = np.asarray([index[str(label)] for label in true], dtype=np.int64)
    p = np.asarray([index[str(label)] for label in predicted], dtype=np.int64)
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    hits, support, chosen = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision, recall = _ratio(hits, chosen), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support > 0) | (chosen > 0)
    cut = float(threshold["threshold"])
    answered = np.ravel(confidence) >= cut
    n = len(t)
    return {
        "n_eval": n,
        "accuracy": float(hits.sum() / n) if n else None,
        "macro_f1": float(f1[present].mean()) if n else None,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion": {"labels": names, "matrix": matrix.tolist()},
        "threshold": cut,
        "threshold_rule": {key: threshold.get(key) for key in ("rule", "target", "met")},
        "coverage": float(answered.mean()) if n else None,
        "answered_accuracy": float((t == p)[answered].mean()) if answered.any() else None,
    }


def held_out(
    head: Head,
    vectors: np.ndarray,
    truth: Sequence[str],
    *,
    min_answered: float | None = None,
    target_precision: float | None = None,
) -> dict[str, Any]:
    """The ``report`` of ``head`` on held-out ``vectors`` whose labels are ``truth``, with the abstention threshold
    chosen on them; with no held-out examples, no figures and no threshold (never abstain)."""
    if not len(truth):
        return {"n_eval": 0, "threshold": None, "coverage": None, "answered_accuracy": None}
    scores = head.scores(vectors)
    confidence = scores.max(axis=1)
    predicted = [head.labels[i] for i in scores.argmax(axis=1)]
    correct = np.array([p == t for p, t in zip(predicted, truth, strict=True)])
    threshold = choose_threshold(confidence, correct, min_answered=min_answered, target_precision=target_precision)
    return report(list(truth), predicted, confidence, head.labels, threshold)
