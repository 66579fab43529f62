"""A fitted classifier head as plain arrays: its scores, in numpy alone, and its files.

A ``Head`` turns L2-normalized sentence embeddings into one score per label
(column ``j`` is ``labels[j]``; labels sorted). It holds numeric arrays and
JSON values only, so it is saved as ``head.json`` + ``head.npz`` and read back
with ``np.load(allow_pickle=False)``: loading a head never unpickles anything,
whatever else lies in its folder (a SetFit folder's ``model_head.pkl``, say).

What each method's scores are:

- ``logreg``: multinomial logistic regression; its probabilities (a sigmoid
  for two labels), equal to scikit-learn's ``predict_proba``.
- ``linear_svc``: a linear SVM; ``softmax(scale * decision_function)``. The
  argmax is the SVM's prediction; the values rank but are not calibrated.
- ``knn``: the training vectors themselves; each of the ``k`` nearest (by
  cosine) votes for its label with its cosine similarity, votes normalized.
- ``mlp``: a small multi-layer perceptron; its probabilities (forward pass in
  numpy), equal to ``predict_proba``.
- ``setfit``: logistic regression on the embeddings of a SetFit-fine-tuned
  body, scored as ``logreg`` (see ``embedq/cores/setfit_train.py``).
- ``anchor`` (zero-shot): one description vector per label;
  ``softmax(scale * cosine)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api_client.errors import ArtifactCorrupt, BadRequest
from api_client.postprocess import unit

ANCHOR = "anchor"


@dataclass
class Head:
    """A fitted head: ``scores(vectors)`` gives ``(n, len(labels))`` scores in [0, 1], rows summing to 1.

    ``params`` holds numeric arrays only (what ``head.npz`` stores); ``config``
    holds JSON values: the parameters it was fitted with, ``dim``, ``seed``,
    and ``converged`` where the fit iterates.
    """

    method: str
    labels: list[str]
    params: dict[str, np.ndarray]
    config: dict[str, Any]

    def __post_init__(self) -> None:
        # C order, as head.npz holds them, so a loaded head computes exactly what the fitted one did.
        self.params = {name: np.ascontiguousarray(value) for name, value in self.params.items()}

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Scores of L2-normalized sentence embeddings ``vectors`` (n, dim), float64."""
        x = np.asarray(vectors, dtype=np.float64)
        dim = self.config["dim"]
        if x.ndim != 2 or x.shape[1] != dim:
            raise BadRequest(f"vectors: expected shape (n, {dim}), got {x.shape}", detail={"field": "vectors"})
        return _SCORERS[self.method](self, x)


# ---------------------------------------------------------------- scoring (numpy only)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _two_columns(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p, p])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _logits(head: Head, x: np.ndarray) -> np.ndarray:
    return x @ head.params["coef"].T + head.params["intercept"]


def _score_logreg(head: Head, x: np.ndarray) -> np.ndarray:
    z = _logits(head, x)
    # Two labels: scikit-learn keeps one row of coefficients, for labels[1].
    return _two_columns(_sigmoid(z[:, 0])) if z.shape[1] == 1 else _softmax(z)


def _score_svc(head: Head, x: np.ndarray) -> np.ndarray:
    z = _logits(head, x) * head.config["scale"]
    return _two_columns(_sigmoid(z[:, 0])) if z.shape[1] == 1 else _softmax(z)


def _score_knn(head: Head, x: np.ndarray, block: int = 1024) -> np.ndarray:
    train = head.params["vectors"].astype(np.float64)
    label_index = head.params["label_index"]
    k = min(head.config["k"], len(train))
    out = np.zeros((len(x), len(head.labels)))
    for start in range(0, len(x), block):
        sims = unit(x[start : start + block]) @ train.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sims, nearest, axis=1), 1e-6, None)
        rows = np.repeat(np.arange(len(sims)), k)
        np.add.at(out[start : start + block], (rows, label_index[nearest].ravel()), weights.ravel())
    return out / out.sum(axis=1, keepdims=True)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "logistic": _sigmoid,
    "identity": lambda z: z,
}


def _score_mlp(head: Head, x: np.ndarray) -> np.ndarray:
    layers = head.config["layers"]
    hidden = _ACTIVATIONS[head.config["activation"]]
    for i in range(layers):
        x = x @ head.params[f"W{i}"] + head.params[f"b{i}"]
        if i < layers - 1:
            x = hidden(x)
    return _two_columns(_sigmoid(x[:, 0])) if x.shape[1] == 1 else _softmax(x)


def _score_anchor(head: Head, x: np.ndarray) -> np.ndarray:
    return _softmax(head.config["scale"] * (unit(x) @ head.params["anchors"].T))


_SCORERS: dict[str, Callable[[Head, np.ndarray], np.ndarray]] = {
    "logreg": _score_logreg,
    "setfit": _score_logreg,
    "linear_svc": _score_svc,
    "knn": _score_knn,
    "mlp": _score_mlp,
    ANCHOR: _score_anchor,
}


# ---------------------------------------------------------------- save and load (no pickle)

HEAD_JSON = "head.json"
HEAD_NPZ = "head.npz"
FORMAT = "embedq-head/1"


def _write(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def save_head(head: Head, folder: Path) -> None:
    """Write ``head.json`` (method, labels, config, array shapes) and ``head.npz`` (the arrays) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(value) for name, value in head.params.items()}
    if any(value.dtype.kind not in "fiu" for value in arrays.values()):
        raise ValueError("a head's params must be numeric arrays")
    meta = {
        "format": FORMAT,
        "method": head.method,
        "labels": head.labels,
        "config": head.config,
        "arrays": {name: {"dtype": value.dtype.str, "shape": list(value.shape)} for name, value in arrays.items()},
    }
    _write(folder / HEAD_NPZ, lambda handle: np.savez(handle, allow_pickle=False, **arrays))
    _write(folder / HEAD_JSON, lambda handle: handle.write(json.dumps(meta, indent=1).encode()))


def load_head(folder: Path) -> Head:
    """The head saved in ``folder``, read from ``head.json`` and ``head.npz`` only, never by unpickling.

    Raises ArtifactCorrupt when either file is missing, malformed, or
    disagrees with the other (``detail["file"]`` names the file).
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / HEAD_JSON).read_text())
        method, labels, config, shapes = meta["method"], meta["labels"], meta["config"], meta["arrays"]
        valid = meta["format"] == FORMAT and method in _SCORERS and isinstance(config, dict)
        if not valid or not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError("unknown format, method or labels")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactCorrupt(f"{folder / HEAD_JSON}: not a readable head ({e})", detail={"file": HEAD_JSON}) from e
    try:
        with np.load(folder / HEAD_NPZ, allow_pickle=False) as npz:
            params = {name: npz[name] for name in npz.files}
        found = {name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in params.items()}
        if found != shapes:
            raise ValueError(f"arrays {found} differ from {HEAD_JSON}'s {shapes}")
        head = Head(method, labels, params, config)
        probe = head.scores(np.zeros((1, config["dim"])))
        if probe.shape != (1, len(labels)):
            raise ValueError(f"scores have shape {probe.shape} for {len(labels)} labels")
    except (OSError, ValueError, KeyError, TypeError, IndexError, BadRequest) as e:
        raise ArtifactCorrupt(f"{folder / HEAD_NPZ}: not a readable head ({e})", detail={"file": HEAD_NPZ}) from e
    return head
