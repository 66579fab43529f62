"""The train_classifier and classify runners.

Training a head on frozen embeddings reads the texts' vectors through the
embedding cache (a re-train on the same texts runs no forward pass), splits
off the held-out examples (stratified, seeded), fits the head, scores it on the
held-out part, chooses the abstention threshold there, and writes the head as
an artifact (``head.json`` + ``head.npz``, no pickle). SetFit fine-tunes the
encoder first and stores it beside its head (``body/``, safetensors). The
artifact folder is named by job and attempt, so a retry never meets a
half-written one; the new version row is the outcome's write, recorded with the
job's success in one transaction (the version's number and whether it became
active are only known there, so that write completes the summary).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from api_client.kinds.classifiers import ClassifyRequest, TrainRequest
from api_client.kinds.training import MIN_EXAMPLES
from api_client.schemas import DEFAULT_MODEL
from api_client.store import classifiers as classifiers_store
from embedq.cores import classifiers as core
from embedq.cores.artifacts import folder_sha256, write_artifact
from embedq.worker.classifier_heads import BODY, HEADS, classify, setfit_body
from embedq.worker.embedding import embed
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime
from embedq.worker.store import items as items_store
from embedq.worker.store.jobs import Claim
from embedq.worker.training import clear_attempts, model_path, step_progress


@runs("classify")
def run_classify(rt: Runtime, claim: Claim, request: ClassifyRequest) -> Outcome:
    """Predictions of the active (or the named) version for each text, stored by item."""
    predictions, version = classify(rt, claim, request)
    summary = {
        "classifier": version.name,
        "version": version.version,
        "method": version.method,
        "texts": len(predictions),
        "abstained": sum(1 for p in predictions if p["abstained"]),
    }
    return Outcome(
        summary,
        write=lambda conn: items_store.write_items(conn=conn, job_id=claim.job_id, outputs=predictions),
        total=len(request.texts),
    )


@runs("train_classifier")
def run_train(rt: Runtime, claim: Claim, request: TrainRequest) -> Outcome:
    """Train and evaluate a new version; the outcome records it (and the classifier, if it is new)."""
    classifier = classifiers_store.find(conn=rt.conn, name=request.name)
    if classifier is not None:
        classifiers_store.check_model(classifier, request.model)
    model_name = classifier["model"] if classifier is not None else request.model or DEFAULT_MODEL
    train, held = core.eval_split(
        request.labels, request.eval_split, seed=request.seed, min_train=MIN_EXAMPLES[request.method]
    )
    root = rt.settings.artifacts
    clear_attempts(root, "classifiers", claim.job_id)
    fitted: dict[str, Any] = {}

    def write_head(tmp: Path) -> None:
        if request.method == "setfit":
            fitted["head"] = _train_setfit(rt, claim, request, model_name=model_name, train=train, tmp=tmp)
        else:
            fitted.update(_train_head(rt, claim, request, model_name, train))
        core.save_head(fitted["head"], tmp)

    meta = {"classifier": request.name, "method": request.method, "job_id": claim.job_id}
    path = write_artifact(root, "classifiers", claim.job_id, f"attempt-{claim.attempt}", write_head, meta)
    head: core.Head = fitted["head"]
    truth = [request.labels[i] for i in held]
    if request.method == "setfit":
        model, model_id = setfit_body(rt, request.name, path)
        held_texts = [request.texts[i] for i in held]
        eval_vectors, _ = embed(rt, model, model_id, held_texts, batch_size=request.batch_size, progress=None)
    else:  # the frozen encoder's vectors of every text are at hand
        model_id, eval_vectors = fitted["model_id"], fitted["vectors"][held]
    metrics = core.held_out(
        head, eval_vectors, truth, min_answered=request.min_answered, target_precision=request.target_precision
    )
    rival = _active_score(rt, classifier, eval_vectors, truth, model_id)
    params = {**request.params, "seed": request.seed}
    summary: dict[str, Any] = {
        "classifier": request.name,
        "method": request.method,
        "params": params,
        "cached": fitted.get("cached"),
        "encoded": fitted.get("encoded"),
        **metrics,
    }

    def write(conn: psycopg.Connection) -> dict[str, Any]:
        classifier_id, active = classifiers_store.lock(conn=conn, name=request.name, model=request.model)
        better = rival is None or (metrics.get("macro_f1") or 0.0) > rival
        activate = active is None or (request.auto_promote and better)
        version = classifiers_store.insert_version(
            conn=conn,
            classifier_id=classifier_id,
            method=request.method,
            labels=head.labels,
            params=params,
            metrics=metrics,
            parent_version=active,
            activate=activate,
            threshold=metrics["threshold"],
            fingerprint=core.fingerprint(request.texts, request.labels),
            model_id=model_id,
            artifact_path=str(path),
            sha256=folder_sha256(path),
            job_id=claim.job_id,
        )
        return {  # known once the version is numbered, under the classifier's lock
            "version": version,
            "active": activate,
            "compared_with": {"version": active, "macro_f1": rival} if active is not None else None,
        }

    return Outcome(summary, write=write, total=len(request.texts))


def _train_head(rt: Runtime, claim: Claim, request: TrainRequest, model_name: str, train: np.ndarray) -> dict[str, Any]:
    model, model_id = rt.model(model_name)
    progress = rt.progress(claim, total=len(request.texts), done=0)
    vectors, lookup = embed(rt, model, model_id, request.texts, batch_size=request.batch_size, progress=progress)
    head = core.fit_head(
        request.method, vectors[train], [request.labels[i] for i in train], seed=request.seed, params=request.params
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

    _, on_step = step_progress(rt, claim)
    return train_setfit(
        model_path(rt, model_name),
        [request.texts[i] for i in train],
        [request.labels[i] for i in train],
        out_dir=tmp / BODY,
        seed=request.seed,
        params=request.params,
        on_step=on_step,
    )


def _active_score(
    rt: Runtime, classifier: dict[str, Any] | None, vectors: np.ndarray, truth: list[str], model_id: int
) -> float | None:
    """Macro-F1 of the active version: on the same held-out examples where it reads the same vectors, else as
    it recorded; ``None`` when there is no active version."""
    if classifier is None or classifier["active_version"] is None:
        return None
    version = classifiers_store.get_version(conn=rt.conn, name=classifier["name"], version=classifier["active_version"])
    loaded = HEADS.get(rt, version)
    if not truth or loaded.model_id != model_id:
        return (version.metrics or {}).get("macro_f1")
    return core.held_out(loaded.head, vectors, truth)["macro_f1"]
