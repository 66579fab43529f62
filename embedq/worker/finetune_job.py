"""Running a fine-tune job: train, store the model as an artifact, register it as a new model version.

The trained model is written into an artifact folder named by job and attempt
(``models/<job id>/attempt-<n>/model``, safetensors, manifest with sha256), so a
killed attempt leaves nothing the next one can mistake for its own. The
``models`` row (registered under the request's name, with the base model
version as its parent and the evaluations before and after as its metrics) and
the job's success are one transaction: from then on encode, similarity,
collections and classifiers resolve the name to the new version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from api_client.schemas import Limits
from api_client.schemas_classifiers import default_name, parse_fine_tune_request
from embedq.cores.artifacts import write_artifact
from embedq.worker.cache import commit
from embedq.worker.classifier_jobs import clear_attempts, model_path
from embedq.worker.lease import finish
from embedq.worker.runtime import Runtime, record_model
from embedq.worker.store import models as models_store
from embedq.worker.store.jobs import Claim

MODEL = "model"
"""The sentence-transformers folder inside a fine-tune's artifact."""


def pairs_fingerprint(pairs: list[list[Any]]) -> str:
    """sha256 (hex) of the training pairs as a multiset: the same pairs in any order give the same value."""
    canonical = sorted(json.dumps(pair, ensure_ascii=True, separators=(",", ":")) for pair in pairs)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def run_fine_tune(rt: Runtime, claim: Claim) -> dict[str, Any]:
    from embedq.cores import finetune

    request = parse_fine_tune_request(claim.request, Limits.of(rt.settings))
    base, base_id = rt.model(request.model, "torch")  # the parent is the version trained from: torch weights
    base_path = model_path(rt, request.model)
    root = rt.settings.artifacts
    clear_attempts(root, "models", claim.job_id)
    progress = rt.progress(claim, total=1, done=0)

    def on_step(done: int, total: int) -> None:
        progress.total = total
        progress.beat(done)

    trained: dict[str, Any] = {}

    def write(tmp: Path) -> None:
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
    artifact = write_artifact(root, "models", claim.job_id, f"attempt-{claim.attempt}", write, meta)
    path = artifact / MODEL
    name = request.name or default_name(request.model)  # the parser always sets it
    loaded = rt.registry.load(name, path)
    summary: dict[str, Any] = {}

    def store(_skip_existing: bool) -> None:
        row = record_model(rt.conn, name, path, loaded, dtype=rt.dtype, source="fine-tune", register=True)
        metrics: dict[str, Any] = {
            key: trained.get(key) for key in ("before", "after", "after_by_dim") if key in trained
        }
        recipe = {key: value for key, value in trained.items() if key not in metrics}
        recipe["fingerprint"] = pairs_fingerprint(request.pairs)
        models_store.set_lineage(
            conn=rt.conn, model_id=row.id, parent_id=base_id, metrics=metrics, config={"fine_tune": recipe}
        )
        summary.update(
            {
                "model": name,
                "model_id": row.id,
                "model_version": loaded.sha256[:12],
                "base": request.model,
                "base_model_id": base_id,
                "artifact_path": str(path),
                "fingerprint": recipe["fingerprint"],
                **trained,
            }
        )
        finish(rt.conn, claim, summary, progress.total)

    commit(rt.conn, store)
    return summary
