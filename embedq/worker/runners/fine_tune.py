"""The fine_tune runner: train, store the model as an artifact, register it as a new model version.

The trained model is written into an artifact folder named by job and attempt
(``models/<job id>/attempt-<n>/model``, safetensors, manifest with sha256), so a
killed attempt leaves nothing the next one can mistake for its own. The
``models`` row (registered under the request's name, with the base model
version as its parent and the evaluations before and after as its metrics) is
the outcome's write, recorded with the job's success in one transaction: from
then on encode, similarity, collections and classifiers resolve the name to
the new version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from api_client.kinds.fine_tune import FineTuneRequest
from embedq.cores.artifacts import write_artifact
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime, record_model
from embedq.worker.store import models as models_store
from embedq.worker.store.jobs import Claim
from embedq.worker.training import clear_attempts, model_path, step_progress

MODEL = "model"
"""The sentence-transformers folder inside a fine-tune's artifact."""
METRICS = ("before", "after", "after_by_dim")
"""What of the training's figures is the new version's evaluation (``models.metrics``); the rest is its recipe."""


@runs("fine_tune")
def run_fine_tune(rt: Runtime, claim: Claim, request: FineTuneRequest) -> Outcome:
    from embedq.cores import finetune

    base, base_id = rt.model(request.model, "torch")  # the parent is the version trained from: torch weights
    base_path = model_path(rt, request.model)
    root = rt.settings.artifacts
    clear_attempts(root, "models", claim.job_id)
    progress, on_step = step_progress(rt, claim)
    trained: dict[str, Any] = {}

    def write_model(tmp: Path) -> None:
        trained.update(
            finetune.fine_tune(
                base_path,
                [tuple(pair) for pair in request.pairs],
                loss=request.loss,
                out_dir=tmp / MODEL,
                eval_pairs=[tuple(pair) for pair in request.eval_pairs] if request.eval_pairs else None,
                matryoshka_dims=request.matryoshka_dims,
                params=request.params,
                seed=request.seed,
                on_step=on_step,
                device="cuda" if rt.hardware == "gpu" else "cpu",
            )
        )

    meta = {"model": request.name, "base": request.model, "base_sha256": base.sha256, "job_id": claim.job_id}
    artifact = write_artifact(root, "models", claim.job_id, f"attempt-{claim.attempt}", write_model, meta)
    path = artifact / MODEL
    loaded = rt.registry.load(request.name, path)
    metrics = {key: trained[key] for key in METRICS if key in trained}
    recipe = {key: value for key, value in trained.items() if key not in metrics}
    recipe["fingerprint"] = finetune.fingerprint(request.pairs)
    summary: dict[str, Any] = {
        "model": request.name,
        "model_version": loaded.sha256[:12],
        "base": request.model,
        "base_model_id": base_id,
        "artifact_path": str(path),
        "fingerprint": recipe["fingerprint"],
        **trained,
    }

    def write(conn: psycopg.Connection) -> dict[str, Any]:
        row = record_model(conn, request.name, path, loaded, dtype=rt.dtype, source="fine-tune", register=True)
        models_store.set_lineage(
            conn=conn, model_id=row.id, parent_id=base_id, metrics=metrics, config={"fine_tune": recipe}
        )
        return {"model_id": row.id}  # known once the row exists

    return Outcome(summary, write=write, total=progress.total)
