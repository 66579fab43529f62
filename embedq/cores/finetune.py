"""The fine-tuning core: train a sentence-transformers model on text pairs and save it as a new folder.

Two losses, for the two shapes of training data a ticket desk has:

- ``mnrl`` (MultipleNegativesRankingLoss): ``(anchor, positive)`` pairs, such as two tickets of one intent
  or a question and its answer. The other positives of a batch are the negatives, so a larger batch
  teaches more; batches are drawn without repeated texts, since a repeat would be a false negative.
- ``cosent`` (CoSENTLoss): ``(text1, text2, score)`` with a float similarity; only the order of the
  scores within a batch matters, so any scale works.

With ``matryoshka_dims`` the loss is wrapped in MatryoshkaLoss, so that the first ``d`` components of each
vector, renormalized, also work as a shorter embedding.

The trainer writes into a temporary folder beside ``out_dir`` (no checkpoints, no logs, no reports), the
model is saved there (safetensors, no pickle files) and renamed to ``out_dir`` last: a folder at
``out_dir`` is always a complete model, and a failed or stopped run leaves none. The same pairs,
parameters, seed and device give the same weights.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from api_client.errors import BadRequest, UnknownModel
from api_client.kinds.training import LOSSES, fine_tune_params
from embedq.cores.finetune_eval import evaluate, evaluate_dims

__all__ = [
    "LOSSES",
    "TrainingStopped",
    "check_dims",
    "check_eval_pairs",
    "check_pairs",
    "evaluate",
    "fine_tune",
    "fingerprint",
]

MIN_PAIRS = 2  # in-batch negatives (mnrl) and score order (cosent) both need two pairs


class TrainingStopped(Exception):
    """``should_stop()`` said so between two training steps; nothing was saved."""


def check_pairs(pairs: Any, loss: str, *, field: str = "pairs") -> list[tuple]:
    """The training pairs as tuples: ``(anchor, positive)`` for mnrl, ``(text1, text2, score)`` for cosent.

    Raises ``BadRequest`` with ``detail={"field": field, "index": i}`` for the first bad item: not a
    list of the right length, a text that is not a string or is empty, a score that is missing, not a
    number or not finite; and for fewer than two pairs.
    """
    if loss not in LOSSES:
        raise BadRequest(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}", detail={"field": "loss"})
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence):
        raise BadRequest(f"{field}: expected a list of pairs, got {type(pairs).__name__}", detail={"field": field})
    checked = [_check_item(item, loss, field, index) for index, item in enumerate(pairs)]
    if len(checked) < MIN_PAIRS:
        why = "in-batch negatives need" if loss == "mnrl" else "scores are ranked against each other: send"
        raise BadRequest(f"{field}: {len(checked)} pairs; {why} at least {MIN_PAIRS}", detail={"field": field})
    return checked


def _check_item(item: Any, loss: str, field: str, index: int) -> tuple:
    where = {"field": field, "index": index}
    shape = "[anchor, positive]" if loss == "mnrl" else "[text1, text2, score]"
    width = 2 if loss == "mnrl" else 3
    if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != width:
        missing = " (the score is missing)" if loss == "cosent" and _is_sequence_of(item, 2) else ""
        raise BadRequest(f"{field}[{index}]: expected {shape}{missing}", detail=where)
    for text in item[:2]:
        if not isinstance(text, str):
            raise BadRequest(f"{field}[{index}]: expected strings, got {type(text).__name__}", detail=where)
        if not text.strip():
            raise BadRequest(f"{field}[{index}]: a text is empty or only whitespace", detail=where)
    if loss == "mnrl":
        return (item[0], item[1])
    score = item[2]
    if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
        raise BadRequest(f"{field}[{index}]: the score must be a finite number, got {score!r}", detail=where)
    return (item[0], item[1], float(score))


def _is_sequence_of(item: Any, length: int) -> bool:
    return isinstance(item, Sequence) and not isinstance(item, str | bytes) and len(item) == length


def check_eval_pairs(pairs: Any) -> list[tuple]:
    """Evaluation pairs, all scored ``(text1, text2, score)`` or all ``(anchor, positive)``, by the first item."""
    scored = isinstance(pairs, Sequence) and len(pairs) > 0 and _is_sequence_of(pairs[0], 3)
    return check_pairs(pairs, "cosent" if scored else "mnrl", field="eval_pairs")


def check_dims(dims: Any, dimension: int | None = None) -> list[int] | None:
    """Matryoshka dimensions: integers, strictly descending, each at least 1 and at most ``dimension``."""
    if dims is None:
        return None
    where = {"field": "matryoshka_dims"}
    if isinstance(dims, str | bytes) or not isinstance(dims, Sequence) or not dims:
        raise BadRequest("matryoshka_dims: expected a non-empty list of integers", detail=where)
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in dims):
        raise BadRequest(f"matryoshka_dims: expected positive integers, got {list(dims)!r}", detail=where)
    if any(a <= b for a, b in itertools.pairwise(dims)):
        raise BadRequest(f"matryoshka_dims: must be strictly descending, got {list(dims)!r}", detail=where)
    if dimension is not None and dims[0] > dimension:
        raise BadRequest(f"matryoshka_dims: {dims[0]} is over the model's dimension of {dimension}", detail=where)
    return [int(d) for d in dims]


def fingerprint(pairs: Sequence[Sequence[Any]]) -> str:
    """sha256 (hex) of the training pairs as a multiset: the same pairs in any order give the same value."""
    canonical = sorted(json.dumps(list(pair), ensure_ascii=True, separators=(",", ":")) for pair in pairs)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def fine_tune(
    base_path: Path,
    pairs: Sequence[tuple],
    *,
    loss: str,
    out_dir: Path,
    eval_pairs: Sequence[tuple] | None = None,
    matryoshka_dims: Sequence[int] | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train the model in ``base_path`` on ``pairs`` and save it to ``out_dir``, which must not exist.

    ``on_step(done, total)`` is called before the first step and after each; ``should_stop()`` is asked
    at the same points and ``True`` raises ``TrainingStopped``. With ``eval_pairs`` the model is
    evaluated before and after (see ``embedq.cores.finetune_eval``); with ``matryoshka_dims`` too, the figures
    after training at each dimension are under ``"after_by_dim"``. Returns plain JSON values: the loss,
    steps, epochs, the parameters used (seed included), the dimensions, the figures, the number of
    training pairs, the mean training loss and the seconds taken (``seconds`` for the whole call,
    ``train_seconds`` for the training steps).
    """
    started = time.perf_counter()
    train = check_pairs(pairs, loss)
    held_out = check_eval_pairs(eval_pairs) if eval_pairs is not None else None
    settings = fine_tune_params(loss, params)
    dims = check_dims(matryoshka_dims)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; fine_tune writes a new folder")
    model = _load(Path(base_path), device)
    dimension = int(model.get_embedding_dimension())
    dims = check_dims(dims, dimension)
    before = evaluate(model, held_out) if held_out else None

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        trainer = _trainer(
            model, train, loss=loss, dims=dims, settings=settings, seed=seed, device=device, output_dir=work / "trainer"
        )
        trainer.add_callback(_progress_callback(on_step, should_stop))
        train_started = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - train_started
        model.save(str(work / "model"), create_model_card=False, safe_serialization=True)
        by_dim = evaluate_dims(model, held_out, [None, *(dims or [])]) if held_out else None
        (work / "model").rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result: dict[str, Any] = {
        "loss": loss,
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "params": {**settings, "seed": seed},
        "matryoshka_dims": dims,
        "dimension": dimension,
        "before": before,
        "after": by_dim["full"] if by_dim else None,
        "train_pairs": len(train),
        "train_loss": float(output.training_loss),
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - started,
    }
    if dims and by_dim:
        result["after_by_dim"] = {key: figures for key, figures in by_dim.items() if key != "full"}
    return result


def _load(path: Path, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise UnknownModel(f"no sentence-transformers model could be loaded from {path}: {exc}") from exc


def _trainer(
    model: Any,
    train: list[tuple],
    *,
    loss: str,
    dims: list[int] | None,
    settings: dict[str, Any],
    seed: int,
    device: str,
    output_dir: Path,
) -> Any:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import PrinterCallback

    columns = ("anchor", "positive") if loss == "mnrl" else ("sentence1", "sentence2", "score")
    dataset = Dataset.from_dict({name: [pair[i] for pair in train] for i, name in enumerate(columns)})
    objective: Any = losses.MultipleNegativesRankingLoss(model) if loss == "mnrl" else losses.CoSENTLoss(model)
    if dims:
        objective = losses.MatryoshkaLoss(model, objective, matryoshka_dims=dims)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_ratio=settings["warmup_ratio"],
        seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES if loss == "mnrl" else BatchSamplers.BATCH_SAMPLER,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )
    trainer = _quiet(SentenceTransformerTrainer)(model=model, args=args, train_dataset=dataset, loss=objective)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _quiet(base: type) -> type:
    """``base`` without the model-card callback: no card is written, so its data (and widget texts) is not gathered."""

    class Trainer(base):
        def add_model_card_callback(self, _default_args_dict: dict[str, Any]) -> None:
            return None

    return Trainer


def _progress_callback(on_step: Callable[[int, int], None] | None, should_stop: Callable[[], bool] | None) -> Any:
    from transformers import TrainerCallback
    from typing_extensions import override

    class Progress(TrainerCallback):
        """Reports steps and honours a stop request at the start and after every step."""

        @override
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._between_steps(state)

        @override
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._between_steps(state)

        @staticmethod
        def _between_steps(state: Any) -> None:
            if on_step is not None:
                on_step(int(state.global_step), int(state.max_steps))
            if should_stop is not None and should_stop():
                raise TrainingStopped(f"stopped after {state.global_step} of {state.max_steps} steps")

    return Progress()
