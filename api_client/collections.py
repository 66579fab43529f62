"""The client's collection queries: create, describe and list collections, and their jobs' hardware class.

``EmbedQ`` inherits them. Creating and describing a collection are queries;
everything that embeds, writes documents or builds an index is a job, declared
with its client method in ``api_client.kinds.collections``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationInfo, model_validator

from api_client.errors import UnknownCollection
from api_client.kinds.encode import check_model_options
from api_client.requests import SLUG, Context, ModelName, Request, Slug, check_name
from api_client.schemas import DEFAULT_MODEL, Limits
from api_client.store import collections as collections_store
from api_client.store.catalog import StoreCatalog


def hardware_of(info: Mapping[str, Any]) -> str:
    """The hardware class whose workers compute a collection's model version: float16 vectors come from
    GPU workers, float32 from CPU workers (a collection not bound yet starts on CPU)."""
    return "gpu" if info.get("dtype") == "float16" else "cpu"


class NewCollection(Request):
    """A new collection: its model (one version, bound at the first upsert) and whether vectors are normalized."""

    collection: Slug
    model: ModelName = DEFAULT_MODEL
    normalize: bool = True

    @model_validator(mode="after")
    def _model_exists(self, info: ValidationInfo) -> NewCollection:
        check_model_options(self, info)
        return self


class CollectionsMixin:
    """Collections of documents bound to one model version, with FAISS indexes and search jobs.

    Every job of a collection goes to the hardware class of its model version
    (``hardware_of``, through ``_hardware``), so a GPU worker never writes
    float16 vectors into a float32 collection, nor the other way round.
    """

    _run: Callable[..., Any]
    limits: Limits

    def create_collection(self, name: str, *, model: str = "all-MiniLM-L6-v2", normalize: bool = True) -> dict:
        """Create a collection (or return the existing one with the same model and normalization).

        Its model version is bound by its first upsert. ``normalize=True``
        scores by cosine similarity, ``False`` by dot product.
        """
        new = NewCollection.parse(
            {"collection": name, "model": model, "normalize": normalize},
            Context(self.limits, catalog=StoreCatalog(self._run)),
        )
        info, _ = self._run(
            lambda conn: collections_store.create_collection(
                conn=conn, name=new.collection, model=new.model, normalize=new.normalize
            )
        )
        return info

    def collection(self, name: str) -> dict:
        """Size, model version, active index version and pending delta of a collection (``UnknownCollection``)."""
        checked = check_name(name, "collection")
        return self._run(lambda conn: collections_store.describe(conn=conn, name=checked))

    def collections(self) -> list[dict]:
        """Every collection, described as ``collection()`` describes one."""
        return self._run(lambda conn: collections_store.list_collections(conn=conn))

    def _brief(self, name: str) -> dict:
        """The collection's id, model and dtype (``UnknownCollection``): one indexed read, no counting."""
        checked = check_name(name, "collection")
        return self._run(lambda conn: collections_store.brief(conn=conn, name=checked))

    def _hardware(self, name: Any) -> str | None:
        """The hardware class of the jobs of collection ``name`` (``hardware_of``); ``None`` for a name that is
        no collection, which the request's own checks then refuse."""
        if not isinstance(name, str) or not SLUG.match(name):
            return None
        try:
            return hardware_of(self._brief(name))
        except UnknownCollection:
            return None
