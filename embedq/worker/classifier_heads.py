"""Classifier versions loaded in this worker process: heads kept in memory, a bounded number of them.

A version is loaded once per (classifier, version, artifact sha256) and reused
until evicted; ``classify`` looks the version up on every job, so a promoted
version is used from the next job on, without a restart. A head is read from
its artifact's ``head.json`` and ``head.npz`` after the whole folder was checked
against its manifest (``verify_artifact``); nothing is ever unpickled.
A zero-shot version's head is built from its label descriptions, embedded
through the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api_client.store.classifiers import ANCHORS, Version
from embedq.cores.artifacts import verify_artifact
from embedq.cores.classifiers import Head, anchor_head, load_head
from embedq.cores.models import LoadedModel

MAX_HEADS = 16
BODY = "body"
"""The folder of a SetFit version's fine-tuned encoder inside its artifact."""


@dataclass(frozen=True)
class Loaded:
    """A version ready to classify: its head and the encoder whose vectors it reads."""

    head: Head
    model: LoadedModel
    model_id: int


class Heads:
    """Loaded versions of this process, least recently used evicted."""

    def __init__(self, max_heads: int = MAX_HEADS) -> None:
        self.max_heads = max_heads
        self._loaded: OrderedDict[tuple[int, int, str | None], Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, rt: Any, version: Version) -> Loaded:
        key = (version.classifier_id, version.version, version.sha256)
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                self._loaded.move_to_end(key)
                return loaded
        loaded = _load(rt, version)
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > self.max_heads:
                self._loaded.popitem(last=False)
        return loaded


def setfit_body(rt: Any, classifier: str, artifact: Path) -> tuple[LoadedModel, int]:
    """The fine-tuned encoder of a SetFit version (its artifact's ``body/``) and its ``models`` row id."""
    from embedq.worker.runtime import record_model

    path = artifact / BODY
    model = rt.registry.load(f"setfit-{classifier}", path)
    row = record_model(rt.conn, f"setfit-{classifier}", path, model, dtype=rt.dtype, source="setfit")
    return model, row.id


def encoder(rt: Any, version: Version) -> tuple[LoadedModel, int]:
    """The encoder a version reads: its SetFit body, or its classifier's model computed as the head was trained
    (the backend of the version's ``models`` row), so a head never scores vectors of another backend."""
    if version.method == "setfit":
        return setfit_body(rt, version.name, Path(version.artifact_path or ""))
    return rt.bound_model(version.model, version.model_id, owner=f"classifier {version.name!r}")


def _load(rt: Any, version: Version) -> Loaded:
    if version.method == ANCHORS:
        model, model_id = rt.model(version.model)
        from embedq.worker.classifier_jobs import embed

        descriptions: dict[str, list[str]] = version.params["descriptions"]
        texts = [text for label in version.labels for text in descriptions[label]]
        vectors = embed(rt, model, model_id, texts, batch_size=32, progress=None)
        owners = np.array([i for i, label in enumerate(version.labels) for _ in descriptions[label]])
        anchors = np.stack([vectors[owners == i].mean(axis=0) for i in range(len(version.labels))])
        anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
        return Loaded(anchor_head(anchors, version.labels), model, model_id)
    path = Path(version.artifact_path or "")
    verify_artifact(path)
    model, model_id = encoder(rt, version)
    return Loaded(load_head(path), model, model_id)
