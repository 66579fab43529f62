"""Classifier heads over sentence embeddings: the methods, fitting, prediction.

Each method is fitted with scikit-learn on L2-normalized sentence embeddings
and kept as a ``embedq.cores.heads.Head`` of plain arrays (SetFit's head is
fitted in ``embedq.cores.setfit_train``; a zero-shot head comes from label
descriptions in ``anchor_head``). ``embedq.cores.heads`` says what each
method's scores are and how a head is saved without pickle;
``embedq.cores.classifier_eval`` holds the held-out split, the abstain
threshold and the report. This module re-exports both, so callers import from
here. What each method takes (its parameters, their defaults and bounds, the
examples each class needs) is declared once, with the request schemas, in
``api_client.kinds.training``.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from api_client.errors import BadRequest
from api_client.kinds.training import METHODS, MIN_EXAMPLES, check_classes, method_params
from api_client.postprocess import unit
from embedq.cores.classifier_eval import choose_threshold, eval_split, held_out, report
from embedq.cores.heads import ANCHOR, Head, load_head, save_head

__all__ = [
    "ANCHOR",
    "DEFAULTS",
    "METHODS",
    "MIN_EXAMPLES",
    "Head",
    "anchor_head",
    "choose_threshold",
    "eval_split",
    "fingerprint",
    "fit_head",
    "held_out",
    "load_head",
    "predict",
    "report",
    "save_head",
]

DEFAULTS: dict[str, dict[str, Any]] = {method: method_params(method, None) for method in METHODS}
"""The parameters of each method when a request gives none (``api_client.kinds.training``)."""

# Zero-shot from the 77 label names: accuracy 0.622 at any scale; test log-loss 1.705 at 10, 1.515 at 20, 1.822 at 30.
ANCHOR_SCALE = 20.0


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
    options = method_params(method, params)
    labels = [str(label) for label in labels]
    check_classes(labels, method)
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
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
        raise BadRequest(f"scale: expected a positive number, got {scale!r}", detail={"field": "scale"})
    scale = float(scale)
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
