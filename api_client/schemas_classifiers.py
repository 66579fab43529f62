"""Request schemas of classifiers, classify, triage and fine-tune jobs.

Everything a user can get wrong is refused here, before a row or a message
exists: labels and texts of different lengths, fewer than two classes, a class
with fewer examples than the method needs, empty or non-string texts, an
unknown method or loss, a name that is not a slug, pairs that are not pairs.
The client runs these parsers before queueing and the worker runs them again
on every message.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api_client.errors import BadRequest, LimitExceeded
from api_client.requests import check_name as check_slug_name
from api_client.schemas import (
    DEFAULT_MODEL,
    Limits,
    check_batch_size,
    check_model_name,
    check_texts,
    parse_options,
    require_object,
)
from api_client.schemas_collections import check_collection_name

METHODS: tuple[str, ...] = ("logreg", "linear_svc", "knn", "mlp", "setfit")
"""Trained classifier methods: heads on frozen embeddings (seconds), or SetFit (fine-tunes the encoder: minutes)."""

ANCHORS = "anchors"
"""The method of a zero-shot version: each label's description embedded, nearest label by cosine."""

MIN_EXAMPLES: dict[str, int] = {"logreg": 2, "linear_svc": 2, "knn": 1, "mlp": 2, "setfit": 2}
"""Examples each class needs (before the eval split): a linear or neural head needs two of a class to
separate it from the rest; a nearest-neighbour vote works from one; SetFit builds its contrastive pairs
from at least two positives per class."""

LOSSES: tuple[str, ...] = ("mnrl", "cosent")
"""Fine-tuning losses: multiple negatives ranking on (anchor, positive) pairs; CoSENT on scored pairs."""

Method = Literal["logreg", "linear_svc", "knn", "mlp", "setfit"]
Loss = Literal["mnrl", "cosent"]


def check_name(name: Any, field: str = "name") -> str:
    """A classifier or model name: a slug, as a collection's (``schemas_collections.check_name``)."""
    return check_slug_name(name, field)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ClassifierOptions(_Strict):
    """A classifier: a name over one embedding model, optionally with zero-shot label descriptions."""

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=200)
    labels: dict[str, str | list[str]] | None = None


class TrainOptions(_Strict):
    method: Method = "logreg"
    eval_split: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    min_answered: float | None = Field(None, gt=0.0, le=1.0)
    target_precision: float | None = Field(None, gt=0.0, le=1.0)
    auto_promote: bool = False
    batch_size: int = Field(32, ge=1)
    model: str | None = Field(None, min_length=1, max_length=200)


class TrainRequest(TrainOptions):
    """Train a new version of classifier ``name`` on ``texts`` and their ``labels``."""

    name: str
    texts: list[str]
    labels: list[str]


class ClassifyOptions(_Strict):
    top_k: int = Field(1, ge=1)
    version: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=1)


class ClassifyRequest(ClassifyOptions):
    """Classify ``texts`` with classifier ``name`` (its active version unless ``version`` is given)."""

    name: str
    texts: list[str]


class TriageOptions(ClassifyOptions):
    k: int = Field(5, ge=1)
    duplicate_threshold: float = Field(0.9, ge=-1.0, le=1.0)


class TriageRequest(TriageOptions):
    """For each text: its category, the ``k`` most similar documents of ``collection``, and likely duplicates."""

    name: str
    collection: str
    texts: list[str]


class FineTuneOptions(_Strict):
    loss: Loss = "mnrl"
    name: str | None = None
    matryoshka_dims: list[int] | None = None
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)


class FineTuneRequest(FineTuneOptions):
    """Fine-tune ``model`` on ``pairs`` and register the result as a new model version named ``name``."""

    model: str
    pairs: list[list[Any]]
    eval_pairs: list[list[Any]] | None = None


def parse_classifier_options(raw: dict[str, Any], limits: Limits) -> ClassifierOptions:
    """A classifier's model and zero-shot labels (``{label: description or [descriptions]}``), checked."""
    options = parse_options(raw, ClassifierOptions)
    model = check_model_name(options.model)
    labels = options.labels
    if labels is not None:
        if len(labels) < 2:
            raise BadRequest(
                f"labels: a classifier needs at least 2 labels, got {len(labels)}", detail={"field": "labels"}
            )
        for label, description in labels.items():
            _check_label(label, "labels")
            texts = [description] if isinstance(description, str) else description
            check_texts(texts, limits, f"labels[{label!r}]")
    return ClassifierOptions.model_construct(model=model, labels=labels)


def _check_label(label: Any, field: str, index: int | None = None) -> str:
    where = f"{field}[{index}]" if index is not None else field
    detail = {"field": field} if index is None else {"field": field, "index": index}
    if not isinstance(label, str):
        raise BadRequest(f"{where}: a label must be a string, got {type(label).__name__}", detail=detail)
    if not label.strip() or len(label) > 200 or "\x00" in label:
        raise BadRequest(f"{where}: a label must be 1 to 200 characters, not blank: {label[:80]!r}", detail=detail)
    return label


def parse_train_request(raw: Any, limits: Limits) -> TrainRequest:
    """Validate a training request: texts, labels, method, split and abstention target."""
    raw = require_object(raw, "name", "texts", "labels")
    name = check_name(raw["name"])
    texts = check_texts(raw["texts"], limits)
    labels = raw["labels"]
    if isinstance(labels, str) or not isinstance(labels, list | tuple):
        raise BadRequest(f"labels: expected a list of strings, got {type(labels).__name__}", detail={"field": "labels"})
    if len(labels) != len(texts):
        raise BadRequest(
            f"labels: {len(labels)} labels for {len(texts)} texts; give one label per text",
            detail={"field": "labels", "texts": len(texts), "labels": len(labels)},
        )
    for index, label in enumerate(labels):
        _check_label(label, "labels", index)
    options = parse_options({k: v for k, v in raw.items() if k not in ("name", "texts", "labels")}, TrainOptions)
    check_batch_size(options.batch_size, limits)
    if options.min_answered is not None and options.target_precision is not None:
        raise BadRequest(
            "min_answered, target_precision: give one abstention target, not both", detail={"field": "min_answered"}
        )
    _check_classes(list(labels), options.method)
    model = check_model_name(options.model) if options.model is not None else None
    fields = {**options.model_dump(), "model": model}
    return TrainRequest.model_construct(**fields, name=name, texts=texts, labels=list(labels))


def _check_classes(labels: list[str], method: str) -> None:
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


def _texts_and_name(raw: Any, limits: Limits, *required: str) -> tuple[dict[str, Any], str, list[str]]:
    raw = require_object(raw, "name", "texts", *required)
    return raw, check_name(raw["name"]), check_texts(raw["texts"], limits)


def parse_classify_request(raw: Any, limits: Limits) -> ClassifyRequest:
    """Validate a classify request."""
    raw, name, texts = _texts_and_name(raw, limits)
    options = parse_options({k: v for k, v in raw.items() if k not in ("name", "texts")}, ClassifyOptions)
    check_batch_size(options.batch_size, limits)
    return ClassifyRequest.model_construct(**options.model_dump(), name=name, texts=texts)


def parse_triage_request(raw: Any, limits: Limits) -> TriageRequest:
    """Validate a triage request: a classify request plus a collection and ``k``."""
    raw, name, texts = _texts_and_name(raw, limits, "collection")
    collection = check_collection_name(raw["collection"])
    options = parse_options({k: v for k, v in raw.items() if k not in ("name", "texts", "collection")}, TriageOptions)
    check_batch_size(options.batch_size, limits)
    if options.k > limits.max_k:
        raise LimitExceeded(
            f"k: {options.k} is over the limit of {limits.max_k} (max_k)",
            detail={"field": "k", "limit": "max_k", "max": limits.max_k, "actual": options.k},
        )
    if len(texts) > limits.max_queries:
        raise LimitExceeded(
            f"texts: {len(texts):,} is over the limit of {limits.max_queries:,} per triage job (max_queries)",
            detail={"field": "texts", "limit": "max_queries", "max": limits.max_queries, "actual": len(texts)},
        )
    return TriageRequest.model_construct(**options.model_dump(), name=name, collection=collection, texts=texts)


def parse_fine_tune_request(raw: Any, limits: Limits) -> FineTuneRequest:
    """Validate a fine-tune request: the base model, the pairs for the loss, the new name."""
    raw = require_object(raw, "model", "pairs")
    model = raw["model"]
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model: name the base model to fine-tune", detail={"field": "model"})
    options = parse_options(
        {k: v for k, v in raw.items() if k not in ("model", "pairs", "eval_pairs")}, FineTuneOptions
    )
    model = check_model_name(model)
    name = check_name(options.name) if options.name is not None else default_name(model)
    pairs = check_pairs(raw["pairs"], options.loss, limits, "pairs")
    eval_pairs = raw.get("eval_pairs")
    if eval_pairs is not None:
        eval_pairs = check_pairs(eval_pairs, "cosent" if _scored(eval_pairs) else "mnrl", limits, "eval_pairs")
    dims = options.matryoshka_dims
    if dims is not None and (not dims or any(d < 1 for d in dims) or sorted(set(dims), reverse=True) != dims):
        raise BadRequest(
            f"matryoshka_dims: give distinct positive dimensions, largest first (e.g. [384, 256, 128, 64]), got {dims}",
            detail={"field": "matryoshka_dims"},
        )
    fields = {**options.model_dump(), "name": name}
    return FineTuneRequest.model_construct(**fields, model=model, pairs=pairs, eval_pairs=eval_pairs)


def default_name(model: str) -> str:
    """The name of a fine-tuned ``model`` when the request gives none: ``<model as a slug>-tuned``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", model.rsplit("/", 1)[-1].lower()).strip("-_") or "model"
    return f"{slug[:57]}-tuned"


def _scored(pairs: Any) -> bool:
    return isinstance(pairs, list | tuple) and bool(pairs) and isinstance(pairs[0], list | tuple) and len(pairs[0]) == 3


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
