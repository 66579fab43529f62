"""SetFit few-shot training: fine-tune the body on text pairs, then fit a logistic-regression head.

SetFit 1.2 pairs texts of the same label (positive) and of different labels
(negative), fine-tunes the sentence-transformers body with a cosine loss on
those pairs, then fits scikit-learn's ``LogisticRegression`` on the tuned
body's embeddings. ``train_setfit`` runs that offline and returns the head as
a ``Head`` of plain arrays (method "setfit", scored as logreg), so nothing of
SetFit is needed to use the result: the body is a sentence-transformers
folder (safetensors) and the head loads with ``embedq.cores.heads.load_head``.

Choices, and why:

- The model is assembled from ``SentenceTransformer(model_path)`` and a new
  ``LogisticRegression``, not ``SetFitModel.from_pretrained``: that method
  ``joblib.load``s a ``model_head.pkl`` if the folder holds one, and nothing
  here unpickles. ``SetFitModel.save_pretrained`` is not used either (it
  pickles the head).
- ``normalize_embeddings=True``: the head is fitted on L2-normalized
  embeddings whatever the body ends with, as every ``Head`` expects.
- Pairs come from ``num_iterations`` (that many positive and as many
  negative pairs per text each epoch: 20 and 20 by default), not SetFit's
  default "oversampling", whose pair count grows with the square of the
  texts. SetFit still walks all n(n+1)/2 combinations once to collect the
  pairs (50 million for 10,000 texts), so this suits few-shot sets.
- Checkpoints, logs and the trainer's scratch files go to a temporary folder
  that is removed afterwards; progress bars and reporting integrations are off.
- Progress and stopping work as in the fine-tuning core (``embedq.cores.finetune``),
  whose callback and ``TrainingStopped`` this module uses: one "stopped on
  request" error for every training job.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from api_client.errors import BadRequest, UnknownModel
from api_client.kinds.training import check_classes, method_params
from embedq.cores.finetune import TrainingStopped, _progress_callback
from embedq.cores.heads import Head

__all__ = ["TrainingStopped", "train_setfit"]


def _arguments(options: dict[str, Any], seed: int, scratch: str) -> Any:
    from setfit import TrainingArguments

    return TrainingArguments(
        output_dir=scratch,
        batch_size=options["batch_size"],
        num_epochs=options["num_epochs"],
        num_iterations=options["num_iterations"],
        max_steps=options["max_steps"] or -1,
        body_learning_rate=options["learning_rate"],
        seed=seed,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        show_progress_bar=False,
    )


def _save_body(body: Any, out_dir: Path) -> None:
    """Write the body into a folder beside ``out_dir``, then rename it into place: all of it or nothing."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        body.save(str(staging), safe_serialization=True, create_model_card=False)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def train_setfit(
    model_path: Path,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    out_dir: Path,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
) -> Head:
    """Train SetFit from the sentence-transformers folder ``model_path``; same inputs and seed, same result.

    On success ``out_dir`` (absent or empty before) holds the fine-tuned body
    as a sentence-transformers folder, to load with
    ``SentenceTransformer(out_dir)``; the head is returned, for
    ``save_head`` (its two files may go into ``out_dir`` too). ``on_step(done,
    total)`` is called at the start (done 0) and after every step;
    ``should_stop()`` is asked at the same moments and once more before
    saving, and True raises ``TrainingStopped``. On that or any error
    ``out_dir`` is left as it was.
    """
    options = method_params("setfit", params)
    labels = [str(label) for label in labels]
    if len(texts) != len(labels):
        raise BadRequest(f"labels: {len(labels)} labels for {len(texts)} texts", detail={"field": "labels"})
    check_classes(labels, "setfit")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    names = sorted(set(labels))

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel, Trainer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    try:
        body = SentenceTransformer(str(model_path), device=device, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UnknownModel(f"no sentence-transformers model could be loaded from {model_path}: {e}") from e
    classifier = LogisticRegression(C=options["head_C"], max_iter=1000)
    model = SetFitModel(model_body=body, model_head=classifier, normalize_embeddings=True)
    data = Dataset.from_dict({"text": list(texts), "label": np.searchsorted(names, labels).tolist()})
    with tempfile.TemporaryDirectory(prefix="embedq-setfit-") as scratch:
        trainer = Trainer(
            model=model,
            args=_arguments(options, seed, scratch),
            train_dataset=data,
            callbacks=[_progress_callback(on_step, should_stop)],
        )
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        trainer.st_trainer.args.dataloader_pin_memory = body.device.type == "cuda"
        with warnings.catch_warnings():
            # Non-convergence of the head is recorded in its config instead.
            warnings.simplefilter("ignore", ConvergenceWarning)
            trainer.train()
        steps = int(trainer.st_trainer.state.global_step)
        if should_stop is not None and should_stop():
            raise TrainingStopped(f"stopped after all {steps} steps, before saving")
        _save_body(body, out_dir)
    config = {
        **options,
        "dim": int(classifier.coef_.shape[1]),
        "seed": seed,
        "n_train": len(labels),
        "steps": steps,
        "converged": bool(np.max(classifier.n_iter_) < 1000),
    }
    arrays = {"coef": classifier.coef_.astype(np.float64), "intercept": classifier.intercept_.astype(np.float64)}
    return Head("setfit", names, arrays, config)
