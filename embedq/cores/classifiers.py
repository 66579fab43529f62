"""Classifier heads over sentence embeddings: the methods, fitting, prediction.

Each method is fitted with scikit-learn on L2-normalized sentence embeddings
and kept as a ``embedq.cores.heads.Head`` of plain arrays (SetFit's head is fitted in
``tasks/setfit_train.py``; a zero-shot head comes from label descriptions in
``anchor_head``). ``tasks/heads.py`` says what each method's scores are and
how a head is saved without pickle; ``tasks/classifier_eval.py`` holds the
held-out split, the abstain threshold and the report. This module re-exports
both, so callers import from here.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from api_client.errors import BadRequest
from embedq.cores.classifier_eval import choose_threshold, eval_split, report
from embedq.cores.heads import ANCHOR, Head, load_head, save_head, unit

__all__ = [
    "ANCHOR",
    "DEFAULTS",
    "METHODS",
    "MIN_EXAMPLES",
    "Head",
    "anchor_head",
    "check_examples",
    "check_params",
    "choose_threshold",
    "eval_split",
    "fingerprint",
    "fit_head",
    "load_head",
    "predict",
    "report",
    "save_head",
]

METHODS = ("logreg", "linear_svc", "knn", "mlp", "setfit")

# Examples each label needs, counted on the whole labelled set before the eval split;
# pass the same number to ``eval_split(min_train=...)`` so the training part keeps them.
MIN_EXAMPLES: dict[str, int] = {
    # Two points per label, so a decision boundary is fitted to more than one
    # sample of each label (one point per label is a nearest-centroid guess).
    "logreg": 2,
    "linear_svc": 2,
    "mlp": 2,
    # A single example is already a neighbour that can vote.
    "knn": 1,
    # SetFit's positive pairs join texts of the same label; with one text the
    # only positive pair is that text with itself, which teaches the body nothing.
    "setfit": 2,
}

# Default parameters of each method; a request's ``params`` may replace any of them, and no other key.
# Figures: Banking77, normalized all-MiniLM-L6-v2 embeddings, test accuracy after fitting on the whole
# train split (10,003 texts) / on 8 texts a label (616), and where scores matter the test log-loss.
DEFAULTS: dict[str, dict[str, Any]] = {
    # C=1: 0.908 / 0.801; C=10: 0.930 / 0.832 (log-loss 0.298 / 0.981).
    "logreg": {"C": 10.0, "max_iter": 1000},
    # C=1: 0.929 / 0.820 (C=0.1: 0.907 / 0.787); scale 5 gave log-loss 0.291 / 0.773 (1: 1.868 / 3.108,
    # 10: 0.466 / 0.762, 20: 0.817 / 1.300).
    "linear_svc": {"C": 1.0, "max_iter": 2000, "scale": 5.0},
    # k=1: 0.920 / 0.794 (every score 1.0); k=5: 0.920 / 0.788; k=10: 0.916 / 0.767; k=20: 0.906 / 0.728.
    "knn": {"k": 5},
    # [256], alpha 0.01: 0.925 / 0.830 (log-loss 0.272 / 0.630); alpha 1e-4: 0.921 / 0.827;
    # [512]: 0.926 / 0.828 at twice the fit time. On 8 a label it stops at max_iter (converged False).
    "mlp": {"hidden_layer_sizes": [256], "alpha": 0.01, "max_iter": 300},
    # SetFit's own defaults for batch size, epochs and learning rate; num_iterations 20 draws 20 positive and
    # 20 negative pairs per text each epoch, instead of SetFit's "oversampling", whose pairs grow with the square
    # of the texts. max_steps 0 means no cap; head_C is the C of SetFit's logistic-regression head (1, as SetFit).
    "setfit": {
        "batch_size": 16,
        "num_epochs": 1,
        "num_iterations": 20,
        "max_steps": 0,
        "learning_rate": 2e-5,
        "head_C": 1.0,
    },
}
_MAY_BE_ZERO = {"alpha", "max_steps"}
# Zero-shot from the 77 label names: accuracy 0.622 at any scale; test log-loss 1.705 at 10, 1.515 at 20, 1.822 at 30.
ANCHOR_SCALE = 20.0

# ---------------------------------------------------------------- checks


def check_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``DEFAULTS[method]`` updated by ``params``; BadRequest for an unknown key or a value of the wrong kind."""
    if method not in DEFAULTS:
        raise BadRequest(
            f"method: unknown method {method!r} (allowed: {', '.join(METHODS)})", detail={"field": "method"}
        )
    merged = dict(DEFAULTS[method])
    for key, value in (params or {}).items():
        if key not in merged:
            allowed = ", ".join(sorted(merged))
            raise BadRequest(f"params.{key}: not a parameter of {method} (allowed: {allowed})", detail={"field": key})
        merged[key] = _checked(key, value, merged[key])
    return merged


def _checked(key: str, value: Any, default: Any) -> Any:
    floor = 0 if key in _MAY_BE_ZERO else 1
    if isinstance(default, list):
        ok = isinstance(value, list | tuple) and len(value) > 0
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        expected = "a non-empty list of positive integers"
        value = list(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= floor
        expected = "a non-negative integer" if floor == 0 else "a positive integer"
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value >= 0 if floor == 0 else value > 0)
        expected = "a non-negative number" if floor == 0 else "a positive number"
        value = float(value) if ok else value
    if not ok:
        raise BadRequest(f"params.{key}: expected {expected}, got {value!r}", detail={"field": key})
    return value


def check_examples(method: str, labels: Sequence[str]) -> None:
    """BadRequest unless there are two labels or more and each has ``MIN_EXAMPLES[method]`` examples."""
    counts = Counter(labels)
    if len(counts) < 2:
        raise BadRequest(
            f"labels: a classifier needs two labels or more, got {len(counts)}", detail={"field": "labels"}
        )
    need = MIN_EXAMPLES[method]
    short = sorted(label for label, n in counts.items() if n < need)
    if short:
        raise BadRequest(
            f"labels: {method} needs {need} examples of each label; too few for {short[:10]}",
            detail={"field": "labels", "min_examples": need, "labels": short[:100]},
        )


def _matrix(vectors: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) != n or not np.isfinite(x).all():
        raise BadRequest(f"vectors: expected {n} finite rows, got shape {x.shape}", detail={"field": "vectors"})
    return x


# ---------------------------------------------------------------- fitting (scikit-learn, then plain arrays)

Fitted = tuple[dict[str, np.ndarray], dict[str, Any]]


def _fit_logreg(x: np.ndarray, y: np.ndarray, seed: int, p: dict[str, Any]) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=p["C"], max_iter=p["max_iter"], random_state=seed).fit(x, y)
    arrays = {"coef": model.coef_.astype(np.float64), "intercept": model.intercept_.astype(np.float64)}
    return arrays, {"converged": bool(np.max(model.n_iter_) < p["max_iter"])}


def _fit_svc(x: np.ndarray, y: np.ndarray, seed: int, p: dict[str, Any]) -> Fitted:
    from sklearn.svm import LinearSVC

    model = LinearSVC(C=p["C"], max_iter=p["max_iter"], random_state=seed).fit(x, y)
    arrays = {"coef": model.coef_.astype(np.float64), "intercept": model.intercept_.astype(np.float64)}
    return arrays, {"converged": bool(np.max(model.n_iter_) < p["max_iter"])}


def _fit_knn(x: np.ndarray, y: np.ndarray, seed: int, p: dict[str, Any]) -> Fitted:
    del seed, p  # nothing random and nothing to fit: the examples are the model
    return {"vectors": unit(x.astype(np.float64)).astype(np.float32), "label_index": y.astype(np.int64)}, {}


def _fit_mlp(x: np.ndarray, y: np.ndarray, seed: int, p: dict[str, Any]) -> Fitted:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=tuple(p["hidden_layer_sizes"]), alpha=p["alpha"], max_iter=p["max_iter"], random_state=seed
    ).fit(x, y)
    arrays = {f"W{i}": w.astype(np.float64) for i, w in enumerate(model.coefs_)}
    arrays.update({f"b{i}": b.astype(np.float64) for i, b in enumerate(model.intercepts_)})
    extra = {"activation": model.activation, "layers": len(model.coefs_), "converged": model.n_iter_ < p["max_iter"]}
    return arrays, extra


_FITTERS: dict[str, Callable[[np.ndarray, np.ndarray, int, dict[str, Any]], Fitted]] = {
    "logreg": _fit_logreg,
    "linear_svc": _fit_svc,
    "knn": _fit_knn,
    "mlp": _fit_mlp,
}


def fit_head(
    method: str, vectors: np.ndarray, labels: Sequence[str], *, seed: int = 0, params: Mapping[str, Any] | None = None
) -> Head:
    """Fit ``method`` on normalized embeddings and their labels; deterministic for a given ``seed``.

    Not for "setfit", whose head comes from ``embedq.cores.setfit_train.train_setfit``.
    A fit that stops at ``max_iter`` still returns its head, with
    ``config["converged"] = False``.
    """
    if method not in _FITTERS:
        hint = " (a setfit head comes from train_setfit)" if method == "setfit" else ""
        raise BadRequest(f"method: cannot fit {method!r} here{hint}", detail={"field": "method"})
    options = check_params(method, params)
    labels = [str(label) for label in labels]
    check_examples(method, labels)
    x = _matrix(vectors, len(labels))
    names = sorted(set(labels))
    y = np.searchsorted(names, labels)
    with warnings.catch_warnings():
        # Non-convergence is recorded in the head's config instead.
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        arrays, extra = _FITTERS[method](x, y, seed, options)
    config = {**options, **extra, "dim": int(x.shape[1]), "seed": seed, "n_train": len(labels)}
    return Head(method, names, arrays, config)


def anchor_head(anchor_vectors: np.ndarray, labels: Sequence[str], *, scale: float = ANCHOR_SCALE) -> Head:
    """A zero-shot head: each label's anchor is the normalized mean of its description vectors.

    ``anchor_vectors[i]`` embeds a description of ``labels[i]`` (a label may
    have several); scores are ``softmax(scale * cosine(vector, anchor))``.
    """
    labels = [str(label) for label in labels]
    x = _matrix(anchor_vectors, len(labels)).astype(np.float64)
    names = sorted(set(labels))
    if len(names) < 2:
        raise BadRequest("labels: a classifier needs two labels or more", detail={"field": "labels"})
    scale = _checked("scale", scale, 1.0)
    y = np.searchsorted(names, labels)
    anchors = np.stack([unit(x[y == i]).mean(axis=0) for i in range(len(names))])
    config = {"scale": scale, "dim": int(x.shape[1]), "n_train": len(labels)}
    return Head(ANCHOR, names, {"anchors": unit(anchors)}, config)


# ---------------------------------------------------------------- predictions


def predict(head: Head, vectors: np.ndarray, *, top_k: int = 1, threshold: float | None = None) -> list[dict]:
    """One dict per vector: ``{"label", "score", "top": [[label, score], ...], "abstained"}``.

    ``label`` and ``score`` are the best label and its score; ``top`` lists
    the ``top_k`` best, best first (ties in label order). ``abstained`` is
    true when ``threshold`` is set and the best score is below it; ``label``
    is still the best guess, for a person to confirm.
    """
    scores = head.scores(vectors)
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(1, min(top_k, len(head.labels)))]
    results = []
    for row, best in zip(scores, order, strict=True):
        top = [[head.labels[j], float(row[j])] for j in best]
        abstained = threshold is not None and top[0][1] < threshold
        results.append({"label": top[0][0], "score": top[0][1], "top": top, "abstained": abstained})
    return results


def fingerprint(texts: Sequence[str], labels: Sequence[str]) -> str:
    """sha256 (hex) of the labelled examples as a multiset: the same pairs in any order give the same value."""
    if len(texts) != len(labels):
        raise BadRequest(f"labels: {len(labels)} labels for {len(texts)} texts", detail={"field": "labels"})
    pairs = sorted([str(text), str(label)] for text, label in zip(texts, labels, strict=True))
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=True, separators=(",", ":")).encode()).hexdigest()
