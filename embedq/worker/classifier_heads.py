"""Classifier versions loaded in this worker process: heads kept in memory, a bounded number of them.

A version is loaded once per (classifier, version, artifact sha256) and reused
until evicted; ``classify`` looks the version up on every job, so a promoted
version is used from the next job on, without a restart. A head is read from
its artifact's ``head.json`` and ``head.npz`` after the folder was found under the
artifact root, every file matched its manifest and the folder the sha256 recorded
with the version when it was trained (``verify_artifact``); nothing is ever unpickled.
A zero-shot version's head is built from its label descriptions, embedded
through the cache (``embedq.cores.classifiers.anchor_head``). ``classify``,
shared by the classify and triage runners, answers a request with the version
it names.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api_client.kinds.classifiers import ClassifyRequest
from api_client.store import classifiers as classifiers_read
from api_client.store.classifiers import ANCHORS, Version
from embedq.cores import classifiers as core
from embedq.cores.artifacts import confined, verify_artifact
from embedq.cores.models import LoadedModel
from embedq.worker.embedding import embed
from embedq.worker.runtime import Runtime, record_model
from embedq.worker.store.jobs import Claim

MAX_HEADS = 16
BODY = "body"
"""The folder of a SetFit version's fine-tuned encoder inside its artifact."""


@dataclass(frozen=True)
class Loaded:
    """A version ready to classify: its head and the encoder whose vectors it reads."""

    head: core.Head
    model: LoadedModel
    model_id: int


class Heads:
    """Loaded versions of this process, least recently used evicted."""

    def __init__(self, max_heads: int = MAX_HEADS) -> None:
        self.max_heads = max_heads
        self._loaded: OrderedDict[tuple[int, int, str | None], Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, rt: Runtime, version: Version) -> Loaded:
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


def setfit_body(rt: Runtime, classifier: str, artifact: Path) -> tuple[LoadedModel, int]:
    """The fine-tuned encoder of a SetFit version (its artifact's ``body/``) and its ``models`` row id."""
    path = artifact / BODY
    model = rt.registry.load(f"setfit-{classifier}", path)
    row = record_model(rt.conn, f"setfit-{classifier}", path, model, dtype=rt.dtype, source="setfit")
    return model, row.id


def encoder(rt: Runtime, version: Version) -> tuple[LoadedModel, int]:
    """The encoder a version reads: its SetFit body, or its classifier's model computed as the head was trained
    (the backend of the version's ``models`` row), so a head never scores vectors of another backend."""
    if version.method == "setfit":
        return setfit_body(rt, version.name, Path(version.artifact_path or ""))
    return rt.bound_model(version.model, version.model_id, owner=f"classifier {version.name!r}")


def _load(rt: Runtime, version: Version) -> Loaded:
    if version.method == ANCHORS:
        model, model_id = rt.model(version.model)
        descriptions: dict[str, list[str]] = version.params["descriptions"]
        described = [(text, label) for label in version.labels for text in descriptions[label]]
        vectors, _ = embed(rt, model, model_id, [text for text, _ in described], batch_size=32, progress=None)
        return Loaded(core.anchor_head(vectors, [label for _, label in described]), model, model_id)
    path = confined(rt.settings.artifacts, version.artifact_path or "")
    verify_artifact(path, sha256=version.sha256)
    model, model_id = encoder(rt, version)
    return Loaded(core.load_head(path), model, model_id)


HEADS = Heads()
"""This process's loaded classifier versions."""


def classify(rt: Runtime, claim: Claim, request: ClassifyRequest) -> tuple[list[dict[str, Any]], Version]:
    """The predictions of ``request`` (each text's through the cache) and the version that made them."""
    version = classifiers_read.get_version(conn=rt.conn, name=request.name, version=request.version)
    loaded = HEADS.get(rt, version)
    progress = rt.progress(claim, total=len(request.texts), done=0)
    vectors, _ = embed(
        rt, loaded.model, loaded.model_id, request.texts, batch_size=request.batch_size, progress=progress
    )
    return core.predict(loaded.head, vectors, top_k=request.top_k, threshold=version.threshold), version
