"""The catalog requests are checked against: which models, collections and classifiers exist.

``StoreCatalog`` answers ``api_client.requests.Catalog`` from PostgreSQL,
through a callable that runs one query on a connection (the client's pool
with its retry, or the worker's own connection), so that the client and the
worker's inline path refuse a request for the same reasons before any row or
message exists. Each lookup runs only when a validator asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from api_client import catalog
from api_client.errors import UnknownModel
from api_client.store import classifiers as classifiers_store
from api_client.store import collections as collections_store
from api_client.store import models as models_store
from api_client.store.models import ModelRow

T = TypeVar("T")
Run = Callable[[Callable[[psycopg.Connection], T]], T]


class StoreCatalog:
    """What exists, read from the database (``run(operation)`` gives ``operation`` a connection)."""

    def __init__(self, run: Run[Any]) -> None:
        self._run = run

    def model(self, name: str) -> ModelRow | None:
        """The ``models`` row ``name`` resolves to; ``None`` for a bundled model no worker loaded yet."""
        row = self._run(lambda conn: models_store.resolve_model(conn=conn, name=name))
        if row is None and name not in catalog.BUNDLED:
            known = sorted(set(catalog.BUNDLED) | set(self._run(lambda conn: models_store.model_names(conn=conn))))
            raise UnknownModel(
                f"model: unknown model {name!r}; known models: {', '.join(known)} "
                "(register a local sentence-transformers folder with `embedq models add NAME PATH`)",
                detail={"field": "model", "model": name},
            )
        return row

    def cross_encoder(self, name: str) -> ModelRow:
        """The registered cross-encoder ``name`` (``UnknownModel`` when there is none)."""
        row = self._run(lambda conn: models_store.resolve_model(conn=conn, name=name))
        if row is None or row.kind != "cross-encoder":
            raise UnknownModel(
                f"rerank: {name!r} is not a registered cross-encoder (register a CrossEncoder folder with "
                f"`embedq models add {name} PATH`)",
                detail={"field": "rerank", "model": name},
            )
        return row

    def collection(self, name: str) -> dict[str, Any]:
        """The collection's id, name, model and dtype (``UnknownCollection`` when there is none)."""
        return self._run(lambda conn: collections_store.brief(conn=conn, name=name))

    def classifier(self, name: str, version: int | None = None) -> Any:
        """The classifier's version ``version``, else its active one (``UnknownClassifier`` when there is none)."""
        return self._run(lambda conn: classifiers_store.get_version(conn=conn, name=name, version=version))
