"""Running classifier jobs: train a new version, classify texts.

Training a head on frozen embeddings reads the texts' vectors through the
embedding cache (a re-train on the same texts runs no forward pass), splits
off the held-out examples (stratified, seeded), fits the head, scores it on the
held-out part, chooses the abstention threshold there, and writes the head as
an artifact (``head.json`` + ``head.npz``, no pickle). SetFit fine-tunes the
encoder first and stores it beside its head (``body/``, safetensors). The new
version row and the job's success are one transaction; the artifact folder is
named by job and attempt, so a retry never meets a half-written one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np

from api_client.errors import UnknownClassifier
from api_client.schemas import Limits
from api_client.schemas_classifiers import ClassifyRequest, TrainRequest, parse_classify_request, parse_train_request
from api_client.store import classifiers as classifiers_read
from api_client.store import models as models_read
from api_client.store.classifiers import Version
from embedq.cores import classifiers as core
from embedq.cores.artifacts import folder_sha256, remove_stale_temps, write_artifact
from embedq.cores.models import LoadedModel, resolve_path
from embedq.worker.cache import Lookup, cached_vectors, commit
from embedq.worker.classifier_heads import BODY, Heads, setfit_body
from embedq.worker.lease import Progress, finish
from embedq.worker.runtime import Runtime
from embedq.worker.store import items as items_store
from embedq.worker.store.jobs import Claim

HEADS = Heads()
"""This process's loaded classifier versions."""


def embed(
    rt: Runtime, model: LoadedModel, model_id: int, texts: list[str], *, batch_size: int, progress: Progress | None
) -> np.ndarray:
    """L2-normalized vectors of ``texts`` through the embedding cache, in order."""
    return _embed(rt, model, model_id, texts, batch_size=batch_size, progress=progress)[0]


def _embed(
    rt: Runtime, model: LoadedModel, model_id: int, texts: list[str], *, batch_size: int, progress: Progress | None
) -> tuple[np.ndarray, Lookup]:
    vectors, lookup = cached_vectors(
        rt, model=model, model_id=model_id, texts=texts, batch_size=batch_size, progress=progress or _UNCOUNTED
    )
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms), lookup


class _Uncounted:
    """Progress of work that is not the job's own items (label descriptions, held-out texts): not reported."""

    done = 0

    def beat(self, done: int) -> None:
        self.done = done


_UNCOUNTED = cast(Progress, _Uncounted())


def run_classify(rt: Runtime, claim: Claim) -> dict[str, Any]:
    """Predictions of the active (or the named) version for each text; stored by item."""
    request = parse_classify_request(claim.request, Limits.of(rt.settings))
    predictions, version = classify(rt, claim, request)
    summary = _classify_summary(version, predictions)

    def write(_skip_existing: bool) -> None:
        items_store.write_items(conn=rt.conn, job_id=claim.job_id, outputs=predictions)
        finish(rt.conn, claim, summary, len(request.texts))

    commit(rt.conn, write)
    return summary


def classify(rt: Runtime, claim: Claim, request: ClassifyRequest) -> tuple[list[dict[str, Any]], Version]:
    """The predictions of ``request`` (with its version), vectors through the cache."""
    version = classifiers_read.get_version(conn=rt.conn, name=request.name, version=request.version)
    loaded = HEADS.get(rt, version)
    progress = rt.progress(claim, total=len(request.texts), done=0)
    vectors = embed(rt, loaded.model, loaded.model_id, request.texts, batch_size=request.batch_size, progress=progress)
    predictions = core.predict(loaded.head, vectors, top_k=request.top_k, threshold=version.threshold)
    return predictions, version


def _classify_summary(version: Version, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "classifier": version.name,
        "version": version.version,
        "method": version.method,
        "texts": len(predictions),
        "abstained": sum(1 for p in predictions if p["abstained"]),
    }


def run_train(rt: Runtime, claim: Claim) -> dict[str, Any]:
    """Train, evaluate and store a new version of a classifier."""
    request = parse_train_request(claim.request, Limits.of(rt.settings))
    classifier = classifiers_read.describe(conn=rt.conn, name=request.name)
    labels = np.array(request.labels, dtype=object)
    train, held_out = core.eval_split(
        request.labels, request.eval_split, seed=request.seed, min_train=core.MIN_EXAMPLES[request.method]
    )
    root = rt.settings.artifacts
    folder = claim.job_id
    clear_attempts(root, "classifiers", folder)
    trained: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        if request.method == "setfit":
            trained["head"] = _train_setfit(rt, claim, request, model_name=classifier["model"], train=train, tmp=tmp)
        else:
            trained.update(_train_head(rt, claim, request, classifier["model"], train))
        core.save_head(trained["head"], tmp)

    meta = {"classifier": request.name, "method": request.method, "job_id": folder}
    path = write_artifact(root, "classifiers", folder, f"attempt-{claim.attempt}", write, meta)
    head: core.Head = trained["head"]
    if request.method == "setfit":
        model, model_id = setfit_body(rt, request.name, path)
        eval_vectors = embed(
            rt, model, model_id, [request.texts[i] for i in held_out], batch_size=request.batch_size, progress=None
        )
    else:  # the frozen encoder's vectors of every text are at hand
        model_id, eval_vectors = trained["model_id"], trained["vectors"][held_out]
    metrics = _evaluate(head, eval_vectors, labels[held_out], request)
    rival = _active_score(rt, classifier, eval_vectors, labels[held_out], model_id)
    params = {**core.DEFAULTS.get(request.method, {}), **request.params, "seed": request.seed}
    summary: dict[str, Any] = {}

    def store(_skip_existing: bool) -> None:
        locked = rt.conn.execute(
            "SELECT id, active_version FROM classifiers WHERE name = %s FOR UPDATE", (request.name,)
        ).fetchone()
        if locked is None:  # deleted while training
            raise UnknownClassifier(
                f"classifier {request.name!r} no longer exists", detail={"classifier": request.name}
            )
        better = rival is None or metrics.get("macro_f1", 0.0) > rival
        activate = locked[1] is None or (request.auto_promote and better)
        version = classifiers_read.insert_version(
            conn=rt.conn,
            classifier_id=locked[0],
            method=request.method,
            labels=head.labels,
            params=params,
            metrics=metrics,
            parent_version=locked[1],
            activate=activate,
            threshold=metrics["threshold"],
            fingerprint=core.fingerprint(request.texts, request.labels),
            model_id=model_id,
            artifact_path=str(path),
            sha256=folder_sha256(path),
            job_id=claim.job_id,
        )
        summary.update(
            {
                "classifier": request.name,
                "version": version,
                "active": activate,
                "method": request.method,
                "params": params,
                "compared_with": {"version": locked[1], "macro_f1": rival} if locked[1] is not None else None,
                "cached": trained.get("cached"),
                "encoded": trained.get("encoded"),
                **metrics,
            }
        )
        finish(rt.conn, claim, summary, len(request.texts))

    commit(rt.conn, store)
    return summary


def model_path(rt: Runtime, name: str) -> Path:
    """The folder of model ``name`` as this worker resolves it (a registered version, else the bundled one)."""
    row = models_read.resolve_model(conn=rt.conn, name=name)
    return resolve_path(name, row.artifact_path if row is not None and row.registered else None)


def clear_attempts(root: Path, kind: str, job_id: str) -> None:
    """Remove what earlier attempts of this job left under ``root/kind/<job id>`` (a temporary folder, or one
    written but never recorded): the claim makes this worker the job's only writer."""
    remove_stale_temps(root, kind, job_id)
    leftover = root / kind / job_id
    if leftover.is_dir():
        shutil.rmtree(leftover)


def _train_head(rt: Runtime, claim: Claim, request: TrainRequest, model_name: str, train: np.ndarray) -> dict[str, Any]:
    model, model_id = rt.model(model_name)
    progress = rt.progress(claim, total=len(request.texts), done=0)
    vectors, lookup = _embed(rt, model, model_id, request.texts, batch_size=request.batch_size, progress=progress)
    head = core.fit_head(
        request.method,
        vectors[train],
        [request.labels[i] for i in train],
        seed=request.seed,
        params=request.params,
    )
    encoded = len(lookup.missing)
    return {
        "head": head,
        "model_id": model_id,
        "vectors": vectors,
        "cached": len(lookup.unique) - encoded,
        "encoded": encoded,
    }


def _train_setfit(
    rt: Runtime, claim: Claim, request: TrainRequest, *, model_name: str, train: np.ndarray, tmp: Path
) -> core.Head:
    from embedq.cores.setfit_train import train_setfit

    progress = rt.progress(claim, total=1, done=0)

    def on_step(done: int, total: int) -> None:
        progress.total = total
        progress.beat(done)

    return train_setfit(
        model_path(rt, model_name),
        [request.texts[i] for i in train],
        [request.labels[i] for i in train],
        out_dir=tmp / BODY,
        seed=request.seed,
        params=request.params,
        on_step=on_step,
    )


def _evaluate(head: core.Head, vectors: np.ndarray, truth: np.ndarray, request: TrainRequest) -> dict[str, Any]:
    """The held-out report, with the abstention threshold chosen on it."""
    if not len(truth):
        return {"n_eval": 0, "threshold": None, "coverage": None, "answered_accuracy": None}
    return _held_out(head, vectors, truth, request.min_answered, request.target_precision)


def _held_out(
    head: core.Head, vectors: np.ndarray, truth: np.ndarray, min_answered: float | None, target: float | None
) -> dict[str, Any]:
    scores = head.scores(vectors)
    confidence = scores.max(axis=1)
    predicted = [head.labels[i] for i in scores.argmax(axis=1)]
    correct = np.array([p == t for p, t in zip(predicted, truth, strict=True)])
    threshold = core.choose_threshold(confidence, correct, min_answered=min_answered, target_precision=target)
    return core.report(list(truth), predicted, confidence, head.labels, threshold)


def _active_score(
    rt: Runtime, classifier: dict[str, Any], vectors: np.ndarray, truth: np.ndarray, model_id: int
) -> float | None:
    """Macro-F1 of the active version: on the same held-out examples where it reads the same vectors, else as
    it recorded; ``None`` when there is no active version."""
    if classifier["active_version"] is None:
        return None
    version = classifiers_read.get_version(conn=rt.conn, name=classifier["name"], version=classifier["active_version"])
    loaded = HEADS.get(rt, version)
    if not len(truth) or loaded.model_id != model_id:
        return (version.metrics or {}).get("macro_f1")
    return _held_out(loaded.head, vectors, truth, None, None)["macro_f1"]
