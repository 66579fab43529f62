"""What the training kinds take (train_classifier, fine_tune): methods, losses and their parameters.

Each classifier method and fine-tuning loss has a parameter schema: typed,
bounded, with its defaults. A request's ``params`` is validated against it
before any row exists and travels on as a plain dict with every default filled
in; the cores (``embedq.cores.classifiers``, ``setfit_train``, ``finetune``)
validate what they are given with the same schemas, so a parameter, its
default and its bounds are written once, as are the examples each class needs
(``check_classes``). Unknown keys are refused, and so are values of the wrong
type (strictly: ``2.0`` is not an integer, ``true`` not a number) or outside
their bounds; the upper bounds keep one job from asking for days of work or a
head of gigabytes. The kinds themselves are declared in
``api_client.kinds.classifiers`` and ``api_client.kinds.fine_tune``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api_client.errors import BadRequest

TRAINING_TIME_LIMITS = (3600, 3720)
"""(soft, hard) seconds of one training or fine-tuning task: SetFit on Banking77 at 8 examples per class
takes about 200 s on 2 CPU cores; a task past the soft limit stops between steps and is retried."""

Method = Literal["logreg", "linear_svc", "knn", "mlp", "setfit"]
METHODS: tuple[str, ...] = get_args(Method)
"""Trained classifier methods: heads on frozen embeddings (seconds), or SetFit (fine-tunes the encoder: minutes)."""

MIN_EXAMPLES: dict[str, int] = {
    # Two points per label, so a decision boundary is fitted to more than one
    # sample of each label (one point per label is a nearest-centroid guess).
    "logreg": 2,
    "linear_svc": 2,
    "mlp": 2,
    # A single example is already a neighbour that can vote.
    "knn": 1,
    # SetFit's positive pairs join texts of the same label; with one text the
    # only positive pair is that text with itself, which teaches the body nothing.
    "setfit": 2,
}
"""Examples each class needs, counted on the whole labelled set before the eval split; ``eval_split(min_train=...)``
keeps that many in the training part."""


def check_classes(labels: Sequence[str], method: str) -> None:
    """At least two classes, each with the examples ``method`` needs (``MIN_EXAMPLES``)."""
    counts = Counter(labels)
    if len(counts) < 2:
        raise BadRequest(
            f"labels: training needs at least 2 classes, got {len(counts)} ({', '.join(map(repr, counts))})",
            detail={"field": "labels", "classes": len(counts)},
        )
    need = MIN_EXAMPLES[method]
    short = sorted((label for label, n in counts.items() if n < need), key=str)
    if short:
        raise BadRequest(
            f"labels: method {method!r} needs at least {need} examples of each class; "
            f"{len(short)} class(es) have fewer: {', '.join(map(repr, short[:10]))}",
            detail={"field": "labels", "method": method, "min_examples": need, "classes": short[:100]},
        )


Loss = Literal["mnrl", "cosent"]
LOSSES: tuple[str, ...] = get_args(Loss)
"""Fine-tuning losses: multiple negatives ranking on (anchor, positive) pairs; CoSENT on scored pairs."""

Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A seed numpy, scikit-learn and transformers all accept."""

Penalty = Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)]
"""An inverse regularization strength (scikit-learn's ``C``)."""
MaxIter = Annotated[int, Field(ge=1, le=100_000)]
Rate = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]


class Params(BaseModel):
    """Parameters: strict types, no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# Defaults: Banking77, normalized all-MiniLM-L6-v2 embeddings, test accuracy after fitting on the whole train
# split (10,003 texts) / on 8 texts a label (616), and where scores matter the test log-loss.


class LogregParams(Params):
    # C=1: 0.908 / 0.801; C=10: 0.930 / 0.832 (log-loss 0.298 / 0.981).
    C: Penalty = 10.0
    max_iter: MaxIter = 1000


class LinearSvcParams(Params):
    # C=1: 0.929 / 0.820 (C=0.1: 0.907 / 0.787); scale 5 gave log-loss 0.291 / 0.773 (1: 1.868 / 3.108,
    # 10: 0.466 / 0.762, 20: 0.817 / 1.300).
    C: Penalty = 1.0
    max_iter: MaxIter = 2000
    scale: float = Field(5.0, gt=0.0, le=1000.0, allow_inf_nan=False)
    """Of ``softmax(scale * decision_function)``: the scores' sharpness."""


class KnnParams(Params):
    # k=1: 0.920 / 0.794 (every score 1.0); k=5: 0.920 / 0.788; k=10: 0.916 / 0.767; k=20: 0.906 / 0.728.
    k: int = Field(5, ge=1, le=1000)


class MlpParams(Params):
    # [256], alpha 0.01: 0.925 / 0.830 (log-loss 0.272 / 0.630); alpha 1e-4: 0.921 / 0.827;
    # [512]: 0.926 / 0.828 at twice the fit time. On 8 a label it stops at max_iter (converged False).
    hidden_layer_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [256], min_length=1, max_length=8
    )
    alpha: float = Field(0.01, ge=0.0, le=1000.0, allow_inf_nan=False)
    max_iter: int = Field(300, ge=1, le=10_000)


class SetFitParams(Params):
    """SetFit's own defaults for batch size, epochs and learning rate; ``num_iterations`` 20 draws 20 positive and
    20 negative pairs per text each epoch, instead of SetFit's "oversampling", whose pairs grow with the square of
    the texts. ``max_steps`` 0 means no cap; ``head_C`` is the C of the logistic-regression head (1, as SetFit)."""

    batch_size: int = Field(16, ge=1, le=1024)
    num_epochs: int = Field(1, ge=1, le=100)
    num_iterations: int = Field(20, ge=1, le=1000)
    max_steps: int = Field(0, ge=0, le=1_000_000)
    learning_rate: Rate = 2e-5
    head_C: Penalty = 1.0


class FineTuneParams(Params):
    """The training arguments of a fine-tune (``SentenceTransformerTrainingArguments``)."""

    epochs: int = Field(1, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=4096)
    learning_rate: Rate = 2e-5
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0, allow_inf_nan=False)


class MnrlParams(FineTuneParams):
    """A fine-tune with MNRL, whose negatives are the other pairs of a batch: two pairs a batch at least."""

    @model_validator(mode="after")
    def _in_batch_negatives(self) -> MnrlParams:
        if self.batch_size < 2:
            raise BadRequest(
                "params.batch_size: mnrl needs batches of at least 2 (its negatives are the other pairs of a batch)",
                detail={"field": "params", "key": "batch_size"},
            )
        return self


METHOD_PARAMS: dict[str, type[Params]] = {
    "logreg": LogregParams,
    "linear_svc": LinearSvcParams,
    "knn": KnnParams,
    "mlp": MlpParams,
    "setfit": SetFitParams,
}
LOSS_PARAMS: dict[str, type[Params]] = {"mnrl": MnrlParams, "cosent": FineTuneParams}


def method_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters of classifier ``method``: ``params`` checked, its defaults filled in."""
    if method not in METHOD_PARAMS:
        raise BadRequest(
            f"method: unknown method {method!r} (allowed: {', '.join(METHODS)})", detail={"field": "method"}
        )
    return _checked(METHOD_PARAMS[method], params, method)


def fine_tune_params(loss: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The training parameters of a fine-tune with ``loss``: ``params`` checked, its defaults filled in."""
    if loss not in LOSS_PARAMS:
        raise BadRequest(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}", detail={"field": "loss"})
    return _checked(LOSS_PARAMS[loss], params, loss)


def params_of(params: Mapping[str, Any] | None) -> Any:
    """A client's ``params`` as JSON: a mapping as a dict, none as ``{}``, anything else as given (refused)."""
    return dict(params) if isinstance(params, Mapping) else ({} if params is None else params)


def _checked(model: type[Params], params: Any, owner: str) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise BadRequest(f"params: expected a JSON object, got {type(params).__name__}", detail={"field": "params"})
    try:
        return model.model_validate(dict(params)).model_dump()
    except ValidationError as exc:
        raise _error(exc, model, owner) from exc


def _error(exc: ValidationError, model: type[Params], owner: str) -> BadRequest:
    """The first problem pydantic found, naming the key (``params.<key>``) and what it accepts."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    key = key if key.isprintable() and key.isascii() else ascii(key)
    detail = {"field": "params", "key": key}
    if first["type"] == "extra_forbidden":
        hint = " (pass the seed as its own argument)" if key == "seed" else ""
        allowed = ", ".join(model.model_fields)
        return BadRequest(f"params.{key}: not a parameter of {owner}{hint} (allowed: {allowed})", detail=detail)
    return BadRequest(f"params.{key}: {first['msg']} (got {ascii(first.get('input'))[:100]})", detail=detail)
