"""The classifier kinds: train_classifier, classify and triage, with their client methods.

Everything a user can get wrong is refused here, before a row or a message
exists: labels and texts of different lengths, fewer than two classes, a class
with fewer examples than the method needs, an unknown method, a name that is
not a slug, a ``params`` key the method does not take or a value out of its
bounds (``api_client.kinds.training``), and, with the catalog, a model,
classifier (or version) or collection that does not exist. ``create_classifier``
(a query, not a job) checks its request here too (``ClassifierRequest``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from api_client import results
from api_client.errors import BadRequest, LimitExceeded
from api_client.kinds import KINDS, Kind, client_method, declare
from api_client.kinds.encode import check_model_options
from api_client.kinds.training import (
    METHODS,
    TRAINING_TIME_LIMITS,
    Method,
    Seed,
    check_classes,
    method_params,
    params_of,
)
from api_client.requests import (
    BatchSize,
    Context,
    Limits,
    ModelName,
    Request,
    Slug,
    Texts,
    TopK,
    check_texts,
    context_of,
)
from api_client.schemas import DEFAULT_MODEL
from api_client.store import classifiers as classifiers_store

if TYPE_CHECKING:
    from api_client.client import EmbedQ
    from api_client.job import Job

__all__ = ["METHODS", "ClassifierRequest", "ClassifyRequest", "TrainRequest", "TriageRequest"]


# ---------------------------------------------------------------- labels


def check_label(label: Any, field: str, index: int | None = None) -> str:
    """A label: a string of 1 to 200 characters, not blank."""
    where = f"{field}[{index}]" if index is not None else field
    detail = {"field": field} if index is None else {"field": field, "index": index}
    if not isinstance(label, str):
        raise BadRequest(f"{where}: a label must be a string, got {type(label).__name__}", detail=detail)
    if not label.strip() or len(label) > 200 or "\x00" in label:
        raise BadRequest(f"{where}: a label must be 1 to 200 characters, not blank: {label[:80]!r}", detail=detail)
    return label


def _labels(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise BadRequest(f"labels: expected a list of strings, got {type(value).__name__}", detail={"field": "labels"})
    return [check_label(label, "labels", index) for index, label in enumerate(value)]


# ---------------------------------------------------------------- requests


def _descriptions(value: Any, info: ValidationInfo) -> Any:
    """Zero-shot labels: at least two, each a label with one description or a list of them."""
    if value is None or not isinstance(value, dict):
        return value  # pydantic names the type
    if len(value) < 2:
        raise BadRequest(f"labels: a classifier needs at least 2 labels, got {len(value)}", detail={"field": "labels"})
    for label, description in value.items():
        check_label(label, "labels")
        texts = [description] if isinstance(description, str) else description
        check_texts(texts, context_of(info).limits, f"labels[{label!r}]")
    return value


class ClassifierRequest(Request):
    """A classifier to create (``create_classifier``): a name over one model, optionally zero-shot labels
    (``{label: description or [descriptions]}``)."""

    name: Slug
    model: ModelName = DEFAULT_MODEL
    labels: Annotated[dict[str, str | list[str]] | None, BeforeValidator(_descriptions)] = None

    @model_validator(mode="after")
    def _model(self, info: ValidationInfo) -> ClassifierRequest:
        check_model_options(self, info)
        return self


class TrainRequest(Request):
    """Train a new version of classifier ``name`` on ``texts`` and their ``labels``."""

    name: Slug
    texts: Texts
    labels: Annotated[list[str], BeforeValidator(_labels)]
    method: Method = "logreg"
    eval_split: float = Field(0.2, ge=0.0, lt=1.0)
    seed: Seed = 0
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    """The method's parameters, its defaults filled in (``api_client.kinds.training``)."""
    min_answered: float | None = Field(None, gt=0.0, le=1.0)
    target_precision: float | None = Field(None, gt=0.0, le=1.0)
    auto_promote: bool = False
    batch_size: BatchSize = 32
    model: ModelName | None = None
    """The model of a classifier that does not exist yet (``None``: the classifier's, else the default)."""

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> Any:
        method = info.data.get("method")
        return method_params(method, value) if method is not None else value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TrainRequest:
        if len(self.labels) != len(self.texts):
            raise BadRequest(
                f"labels: {len(self.labels)} labels for {len(self.texts)} texts; give one label per text",
                detail={"field": "labels", "texts": len(self.texts), "labels": len(self.labels)},
            )
        if self.min_answered is not None and self.target_precision is not None:
            raise BadRequest(
                "min_answered, target_precision: give one abstention target, not both",
                detail={"field": "min_answered"},
            )
        check_classes(self.labels, self.method)
        if self.model is not None:
            check_model_options(self, info)
        return self


class ClassifyRequest(Request):
    """Classify ``texts`` with classifier ``name`` (its active version unless ``version`` is given)."""

    name: Slug
    texts: Texts
    top_k: TopK = 1
    version: int | None = Field(None, ge=1)
    batch_size: BatchSize = 32

    @model_validator(mode="after")
    def _classifier(self, info: ValidationInfo) -> ClassifyRequest:
        found = context_of(info).catalog
        if found is not None:
            found.classifier(self.name, self.version)  # UnknownClassifier, naming its versions
        return self


class TriageRequest(ClassifyRequest):
    """For each text: its category, the ``k`` most similar documents of ``collection``, and likely duplicates."""

    collection: Slug
    k: int = Field(5, ge=1)
    duplicate_threshold: float = Field(0.9, ge=-1.0, le=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _search(self, info: ValidationInfo) -> TriageRequest:
        context = context_of(info)
        limits = context.limits
        if self.k > limits.max_k:
            raise LimitExceeded(
                f"k: {self.k} is over the limit of {limits.max_k} (max_k)",
                detail={"field": "k", "limit": "max_k", "max": limits.max_k, "actual": self.k},
            )
        if len(self.texts) > limits.max_queries:
            raise LimitExceeded(
                f"texts: {len(self.texts):,} is over the limit of {limits.max_queries:,} per triage job (max_queries)",
                detail={"field": "texts", "limit": "max_queries", "max": limits.max_queries, "actual": len(self.texts)},
            )
        if context.catalog is not None:
            context.catalog.collection(self.collection)  # UnknownCollection
        return self

    def search_request(self, limits: Limits) -> Any:
        """The search this triage runs: its texts as the queries of a search of its collection."""
        raw = {"collection": self.collection, "queries": self.texts, "k": self.k, "batch_size": self.batch_size}
        return KINDS["search"].parse(raw, Context(limits))


TRAIN_CLASSIFIER = declare(
    Kind(
        name="train_classifier",
        request=TrainRequest,
        read_result=results.read_summary,
        output="classifier_versions (the summary is the report and names the version)",
        text_fields=("texts",),
        lane="batch",
        time_limits=TRAINING_TIME_LIMITS,
    )
)
CLASSIFY = declare(
    Kind(
        name="classify",
        request=ClassifyRequest,
        read_result=results.read_predictions,
        output="item_results: one prediction (jsonb) by item (text)",
        text_fields=("texts",),
    )
)
TRIAGE = declare(
    Kind(
        name="triage",
        request=TriageRequest,
        read_result=results.read_triage,
        output="item_results: {category, similar, duplicates} (jsonb) by item (text)",
        text_fields=("texts",),
        lane="interactive",
    )
)
# ---------------------------------------------------------------- client methods


@client_method
def train_classifier(
    self: EmbedQ,
    name: str,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    method: str = "logreg",
    eval_split: float = 0.2,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    min_answered: float | None = None,
    target_precision: float | None = None,
    auto_promote: bool = False,
    model: str | None = None,
    batch_size: int = 32,
    idempotency_key: str | None = None,
) -> Job:
    """Train a new version of classifier ``name`` (created over ``model`` if it does not exist yet).

    ``method``: ``logreg``, ``linear_svc``, ``knn``, ``mlp`` (heads on the frozen model's embeddings:
    seconds, served from the embedding cache on a re-train) or ``setfit`` (fine-tunes the encoder
    contrastively: minutes). ``eval_split`` of the examples is held out, stratified by label: the report
    and the abstention threshold come from it. The threshold answers ``min_answered`` of held-out
    examples (default 0.95), or reaches ``target_precision`` on the answered part. ``result()`` is the
    report: version, accuracy, macro-F1, per-class precision/recall, confusion matrix, threshold and its
    coverage. The first version is active at once; later ones when promoted, or with ``auto_promote``
    when their held-out macro-F1 beats the active version's on the same held-out examples.
    """
    from api_client.store.catalog import StoreCatalog

    raw = {
        "name": name,
        "texts": self.listed(texts),
        "labels": self.listed(labels),
        "method": method,
        "eval_split": eval_split,
        "seed": seed,
        "params": params_of(params),
        "min_answered": min_answered,
        "target_precision": target_precision,
        "auto_promote": auto_promote,
        "model": model,
        "batch_size": batch_size,
    }
    request = TRAIN_CLASSIFIER.parse(raw, Context(self.limits, catalog=StoreCatalog(self._run)))
    self._run(lambda conn: classifiers_store.ensure_classifier(conn=conn, name=request.name, model=request.model))
    return self.submit("train_classifier", raw, idempotency_key=idempotency_key, lane=None, hardware=None)


@client_method
def classify(
    self: EmbedQ,
    name: str,
    texts: Sequence[str],
    *,
    top_k: int = 1,
    version: int | None = None,
    batch_size: int = 32,
    lane: str | None = None,
) -> Job:
    """Classify texts: ``result()`` is one prediction per text, in order.

    A prediction is ``{"label", "score", "top": [(label, score), ...], "abstained"}``: ``top`` holds the
    ``top_k`` best labels, ``abstained`` is true when the score is under the version's threshold (hand
    those to a person). The active version answers unless ``version`` names another.
    """
    raw = {"name": name, "texts": self.listed(texts), "top_k": top_k, "version": version, "batch_size": batch_size}
    return self.submit("classify", raw, idempotency_key=None, lane=lane, hardware=None)


@client_method
def triage(
    self: EmbedQ,
    name: str,
    *,
    collection: str,
    texts: Sequence[str],
    k: int = 5,
    duplicate_threshold: float = 0.9,
    top_k: int = 1,
    version: int | None = None,
    batch_size: int = 32,
) -> Job:
    """One job per batch of new tickets: category, the ``k`` most similar documents, likely duplicates.

    ``result()`` is one record per text: ``{"category": <a classify prediction>, "similar": [hits],
    "duplicates": [the hits scoring at least duplicate_threshold]}``.
    """
    from api_client.collections import hardware_of

    raw = {
        "name": name,
        "collection": collection,
        "texts": self.listed(texts),
        "k": k,
        "duplicate_threshold": duplicate_threshold,
        "top_k": top_k,
        "version": version,
        "batch_size": batch_size,
    }
    hardware = hardware_of(self._brief(collection))  # the collection's model version runs on that hardware
    return self.submit("triage", raw, idempotency_key=None, lane=None, hardware=hardware)
