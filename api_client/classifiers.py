"""The client's classifier and fine-tuning methods.

``EmbedQ`` inherits them. Creating a classifier, listing its versions,
promoting and rolling back are queries; training, classifying, triage and
fine-tuning are jobs (training and fine-tuning on the batch lane, classify on
the interactive lane).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from api_client.errors import BadRequest
from api_client.schemas_classifiers import check_name, parse_classifier_options, parse_train_request
from api_client.store import classifiers as classifiers_store

if TYPE_CHECKING:
    from api_client.job import Job


def _listed(values: Any) -> Any:
    """Lists and tuples as lists (JSON); anything else as given, for the parser to refuse."""
    return [list(v) if isinstance(v, tuple) else v for v in values] if isinstance(values, list | tuple) else values


class ClassifiersMixin:
    """Classifiers for triage: zero-shot label anchors, trained heads, SetFit; versions; fine-tuned models."""

    _run: Callable[..., Any]
    submit: Callable[..., Job]
    listed: Callable[[Any], Any]
    limits: Any

    def create_classifier(
        self, name: str, *, model: str = "all-MiniLM-L6-v2", labels: Mapping[str, str | Sequence[str]] | None = None
    ) -> dict:
        """Create a classifier over ``model`` (or return the existing one over the same model).

        With ``labels`` (``{label: description}``, or a list of descriptions per label) it answers at once,
        zero-shot: a text takes the label whose description embedding is nearest by cosine. That version is
        active if the classifier had none; train one with ``train_classifier`` to do better.
        """
        raw_labels = (
            {label: list(d) if isinstance(d, list | tuple) else d for label, d in labels.items()}
            if isinstance(labels, Mapping)
            else labels
        )
        options = parse_classifier_options({"model": model, "labels": raw_labels}, self.limits)
        self._check_model(options)  # type: ignore[attr-defined]
        name = check_name(name)

        def create(conn: Any) -> dict:
            info = classifiers_store.ensure_classifier(conn=conn, name=name, model=options.model)
            if options.labels is None:
                return info
            described = {label: [d] if isinstance(d, str) else list(d) for label, d in options.labels.items()}
            return classifiers_store.add_anchor_version(conn=conn, name=name, labels=described)

        return self._run(create)

    def classifier(self, name: str) -> dict:
        """Model, active version (method, labels, threshold, metrics) and number of versions of a classifier."""
        return self._run(lambda conn: classifiers_store.describe(conn=conn, name=check_name(name)))

    def classifiers(self) -> list[dict]:
        """Every classifier, described as ``classifier()`` describes one."""
        return self._run(lambda conn: classifiers_store.list_classifiers(conn=conn))

    def classifier_versions(self, name: str) -> list[dict]:
        """Every version of a classifier, oldest first: method, metrics, threshold, data fingerprint, parent."""
        return self._run(lambda conn: classifiers_store.versions(conn=conn, name=check_name(name)))

    def promote_classifier(self, name: str, *, version: int) -> dict:
        """Make ``version`` the one ``classify`` uses; workers pick it up on their next classify job."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise BadRequest(f"version: expected an integer, got {version!r}", detail={"field": "version"})
        return self._run(lambda conn: classifiers_store.promote(conn=conn, name=check_name(name), version=version))

    def rollback_classifier(self, name: str) -> dict:
        """Make the version active before the current one active again."""
        return self._run(lambda conn: classifiers_store.rollback(conn=conn, name=check_name(name)))

    def train_classifier(
        self,
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
        raw = {
            "name": name,
            "texts": list(texts) if isinstance(texts, list | tuple) else texts,
            "labels": list(labels) if isinstance(labels, list | tuple) else labels,
            "method": method,
            "eval_split": eval_split,
            "seed": seed,
            "params": dict(params) if isinstance(params, Mapping) else ({} if params is None else params),
            "min_answered": min_answered,
            "target_precision": target_precision,
            "auto_promote": auto_promote,
            "model": model,
            "batch_size": batch_size,
        }
        request = parse_train_request(raw, self.limits)
        if request.model is not None:
            self._check_model(request)  # type: ignore[attr-defined]
        self._run(lambda conn: classifiers_store.ensure_classifier(conn=conn, name=request.name, model=request.model))
        return self.submit("train_classifier", raw, idempotency_key=idempotency_key, lane=None, hardware=None)

    def classify(
        self,
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
        raw = {
            "name": name,
            "texts": list(texts) if isinstance(texts, list | tuple) else texts,
            "top_k": top_k,
            "version": version,
            "batch_size": batch_size,
        }
        return self.submit("classify", raw, idempotency_key=None, lane=lane, hardware=None)

    def triage(
        self,
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

        info = self._brief(collection)  # type: ignore[attr-defined]
        raw = {
            "name": name,
            "collection": collection,
            "texts": list(texts) if isinstance(texts, list | tuple) else texts,
            "k": k,
            "duplicate_threshold": duplicate_threshold,
            "top_k": top_k,
            "version": version,
            "batch_size": batch_size,
        }
        return self.submit("triage", raw, idempotency_key=None, lane=None, hardware=hardware_of(info))

    def fine_tune(
        self,
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
            "matryoshka_dims": list(matryoshka_dims) if isinstance(matryoshka_dims, list | tuple) else matryoshka_dims,
            "params": dict(params) if isinstance(params, Mapping) else ({} if params is None else params),
            "seed": seed,
        }
        return self.submit("fine_tune", raw, idempotency_key=idempotency_key, lane=None, hardware=None)
