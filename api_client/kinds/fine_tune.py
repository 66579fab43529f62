"""The fine_tune kind: an embedding model trained on text pairs, registered as a new model version.

A request is refused before any row exists when its pairs are not pairs of
the loss's shape (``(anchor, positive)`` for MNRL, ``(text1, text2, score)``
for CoSENT), a text or score is bad, its ``params`` (epochs, batch size,
learning rate, warm-up) are unknown or out of bounds
(``api_client.kinds.training``), its Matryoshka dimensions are not strictly
descending or exceed the model's, its name is not a slug, or, with the
catalog, its base model does not exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from api_client import results
from api_client.catalog import canonical_name
from api_client.errors import BadRequest, LimitExceeded
from api_client.kinds import Kind, client_method, declare
from api_client.kinds.training import LOSSES, TRAINING_TIME_LIMITS, Loss, Seed, fine_tune_params, params_of
from api_client.requests import Limits, ModelName, Request, Slug, check_texts, context_of

if TYPE_CHECKING:
    from api_client.client import EmbedQ
    from api_client.job import Job

__all__ = ["LOSSES", "FineTuneRequest", "default_name"]


def check_pairs(pairs: Any, loss: str, limits: Limits, field: str) -> list[list[Any]]:
    """``(anchor, positive)`` pairs for MNRL, ``(text1, text2, score)`` for CoSENT, each text checked."""
    if isinstance(pairs, str) or not isinstance(pairs, list | tuple):
        raise BadRequest(f"{field}: expected a list of pairs, got {type(pairs).__name__}", detail={"field": field})
    if len(pairs) < 2:
        why = "its negatives are the other pairs of a batch" if loss == "mnrl" else "it learns the order of scores"
        raise BadRequest(f"{field}: {loss} needs at least 2 pairs ({why})", detail={"field": field})
    if len(pairs) > limits.max_texts_per_job:
        raise LimitExceeded(
            f"{field}: {len(pairs):,} pairs is over the limit of {limits.max_texts_per_job:,} (max_texts_per_job)",
            detail={"field": field, "limit": "max_texts_per_job", "max": limits.max_texts_per_job},
        )
    width = 2 if loss == "mnrl" else 3
    shape = "[anchor, positive]" if loss == "mnrl" else "[text1, text2, score]"
    out: list[list[Any]] = []
    for index, pair in enumerate(pairs):
        where = {"field": field, "index": index}
        if not isinstance(pair, list | tuple) or len(pair) != width:
            raise BadRequest(f"{field}[{index}]: {loss} takes {shape} items, got {ascii(pair)[:100]}", detail=where)
        check_texts(list(pair[:2]), limits, f"{field}[{index}]")
        if width == 3:
            score = pair[2]
            if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
                raise BadRequest(f"{field}[{index}]: the score must be a finite number, got {score!r}", detail=where)
        out.append(list(pair))
    return out


def _scored(pairs: Any) -> bool:
    return isinstance(pairs, list | tuple) and bool(pairs) and isinstance(pairs[0], list | tuple) and len(pairs[0]) == 3


def default_name(model: str) -> str:
    """The name of a fine-tuned ``model`` when the request gives none: ``<model as a slug>-tuned``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", model.rsplit("/", 1)[-1].lower()).strip("-_") or "model"
    return f"{slug[:57]}-tuned"


class FineTuneRequest(Request):
    """Fine-tune ``model`` on ``pairs`` and register the result as a new model version named ``name``."""

    model: ModelName
    loss: Loss = "mnrl"
    pairs: list[list[Any]]
    eval_pairs: list[list[Any]] | None = None
    name: Slug
    """The new model's name; a request without one gets ``default_name(model)``."""
    matryoshka_dims: list[int] | None = None
    seed: Seed = 0
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    """The training parameters, their defaults filled in (``api_client.kinds.training.FineTuneParams``)."""

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("model"), str):
            return {**data, "name": default_name(canonical_name(data["model"]))}
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise BadRequest("model: name the base model to fine-tune", detail={"field": "model"})
        return value

    @field_validator("pairs", "eval_pairs", mode="before")
    @classmethod
    def _pairs(cls, value: Any, info: ValidationInfo) -> Any:
        loss = info.data.get("loss")
        if value is None or loss is None:
            return value
        if info.field_name == "eval_pairs":
            loss = "cosent" if _scored(value) else "mnrl"
        return check_pairs(value, loss, context_of(info).limits, info.field_name or "pairs")

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> Any:
        loss = info.data.get("loss")
        return fine_tune_params(loss, value) if loss is not None else value

    @model_validator(mode="after")
    def _dimensions_and_model(self, info: ValidationInfo) -> FineTuneRequest:
        dims = self.matryoshka_dims
        if dims is not None and (not dims or any(d < 1 for d in dims) or sorted(set(dims), reverse=True) != dims):
            raise BadRequest(
                "matryoshka_dims: give distinct positive dimensions, largest first (e.g. [384, 256, 128, 64]), "
                f"got {dims}",
                detail={"field": "matryoshka_dims"},
            )
        found = context_of(info).catalog
        row = found.model(self.model) if found is not None else None  # UnknownModel
        if dims and row is not None and row.dimension and dims[0] > row.dimension:
            raise BadRequest(
                f"matryoshka_dims: {dims[0]} is over the model's dimension of {row.dimension}",
                detail={"field": "matryoshka_dims", "max": row.dimension},
            )
        return self


FINE_TUNE = declare(
    Kind(
        name="fine_tune",
        request=FineTuneRequest,
        read_result=results.read_summary,
        output="models (a registered version; the summary names it with its evaluation before and after)",
        lane="batch",
        time_limits=TRAINING_TIME_LIMITS,
    )
)


def _listed(values: Any) -> Any:
    """Lists and tuples as lists (JSON); anything else as given, for the parser to refuse."""
    return [list(v) if isinstance(v, tuple) else v for v in values] if isinstance(values, list | tuple) else values


@client_method
def fine_tune(
    self: EmbedQ,
    model: str,
    pairs: Sequence[Sequence[Any]],
    *,
    loss: str = "mnrl",
    eval_pairs: Sequence[Sequence[Any]] | None = None,
    name: str | None = None,
    matryoshka_dims: Sequence[int] | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    idempotency_key: str | None = None,
) -> Job:
    """Fine-tune embedding model ``model`` and register the result as model ``name``.

    ``loss="mnrl"`` takes ``(anchor, positive)`` pairs (the other pairs of a batch are the negatives);
    ``loss="cosent"`` takes ``(text1, text2, score)``. ``matryoshka_dims`` (largest first) also trains
    truncated embeddings. ``eval_pairs`` are scored before and after. ``result()`` names the new model
    version with both evaluations; encode, similarity, collections and classifiers can use ``name`` at once.
    ``params``: ``epochs``, ``batch_size``, ``learning_rate``, ``warmup_ratio``.
    """
    raw = {
        "model": model,
        "pairs": _listed(pairs),
        "loss": loss,
        "eval_pairs": _listed(eval_pairs) if eval_pairs is not None else None,
        "name": name,
        "matryoshka_dims": self.listed(matryoshka_dims),
        "params": params_of(params),
        "seed": seed,
    }
    return self.submit("fine_tune", raw, idempotency_key=idempotency_key, lane=None, hardware=None)
