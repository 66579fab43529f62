"""What the training runners (train_classifier with SetFit, fine_tune) share: the base model's folder, a clean
artifact folder per job, and their steps as the job's progress."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from api_client.store import models as models_read
from embedq.cores.artifacts import remove_stale_temps
from embedq.cores.models import resolve_path
from embedq.worker.lease import Progress
from embedq.worker.runtime import Runtime
from embedq.worker.store.jobs import Claim


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


def step_progress(rt: Runtime, claim: Claim) -> tuple[Progress, Callable[[int, int], None]]:
    """The job's progress and the ``on_step(done, total)`` of a trainer that counts it in training steps."""
    progress = rt.progress(claim, total=1, done=0)

    def on_step(done: int, total: int) -> None:
        progress.total = total
        progress.beat(done)

    return progress, on_step
