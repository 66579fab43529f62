"""The client's classifier queries: create, describe, list, promote, roll back.

``EmbedQ`` inherits them. Training, classifying, triage and fine-tuning are
jobs, whose methods are declared with their kinds
(``api_client.kinds.classifiers``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from api_client.errors import BadRequest
from api_client.kinds.classifiers import ClassifierRequest
from api_client.requests import Context, check_name
from api_client.store import classifiers as classifiers_store
from api_client.store.catalog import StoreCatalog


class ClassifiersMixin:
    """Classifiers for triage: created over a model (zero-shot from label descriptions), described, versions promoted
    and rolled back."""

    _run: Callable[..., Any]
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
        request = ClassifierRequest.parse(
            {"name": name, "model": model, "labels": raw_labels}, Context(self.limits, catalog=StoreCatalog(self._run))
        )

        def create(conn: Any) -> dict:
            info = classifiers_store.ensure_classifier(conn=conn, name=request.name, model=request.model)
            if request.labels is None:
                return info
            described = {label: [d] if isinstance(d, str) else list(d) for label, d in request.labels.items()}
            return classifiers_store.add_anchor_version(conn=conn, name=request.name, labels=described)

        return self._run(create)

    def classifier(self, name: str) -> dict:
        """Model, active version (method, labels, threshold, metrics) and number of versions of a classifier."""
        return self._run(lambda conn: classifiers_store.describe(conn=conn, name=check_name(name, "name")))

    def classifiers(self) -> list[dict]:
        """Every classifier, described as ``classifier()`` describes one."""
        return self._run(lambda conn: classifiers_store.list_classifiers(conn=conn))

    def classifier_versions(self, name: str) -> list[dict]:
        """Every version of a classifier, oldest first: method, metrics, threshold, data fingerprint, parent."""
        return self._run(lambda conn: classifiers_store.versions(conn=conn, name=check_name(name, "name")))

    def promote_classifier(self, name: str, *, version: int) -> dict:
        """Make ``version`` the one ``classify`` uses; workers pick it up on their next classify job."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise BadRequest(f"version: expected an integer, got {version!r}", detail={"field": "version"})
        return self._run(
            lambda conn: classifiers_store.promote(conn=conn, name=check_name(name, "name"), version=version)
        )

    def rollback_classifier(self, name: str) -> dict:
        """Make the version active before the current one active again."""
        return self._run(lambda conn: classifiers_store.rollback(conn=conn, name=check_name(name, "name")))
