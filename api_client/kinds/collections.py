"""The collection kinds: upsert, delete, build_index, search and reindex.

Every request names its collection (a slug); with the catalog, the collection
must exist before any row or message does, and the worker reads it again
when the job runs. Documents are ``{"id", "text", "metadata"}``: ids are
strings unique within one upsert, texts pass the checks of encode texts,
metadata is a JSON object. A search filter is equality on metadata keys, each
value a JSON scalar. Every job of a collection goes to the hardware class of
its model version (``api_client.collections.hardware_of``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from api_client import catalog, results
from api_client.backends import Backend
from api_client.errors import BadRequest, LimitExceeded
from api_client.kinds import Kind, client_method, declare, summing
from api_client.kinds.collection_fields import INCLUDE, Documents, Filter, Ids, Include, IndexKind, IndexParams
from api_client.requests import BatchSize, ModelName, Request, Slug, Texts, context_of
from api_client.store import collections as collections_store
from api_client.store.jobs import Chunk, split_list

if TYPE_CHECKING:
    from api_client.client import EmbedQ
    from api_client.job import Job

# ---------------------------------------------------------------- the requests


class CollectionRequest(Request):
    """A request on one collection, which must exist (checked against the catalog)."""

    collection: Slug

    @model_validator(mode="after")
    def _collection_exists(self, info: ValidationInfo) -> CollectionRequest:
        found = context_of(info).catalog
        if found is not None:
            found.collection(self.collection)
        return self


class UpsertRequest(CollectionRequest):
    """Documents to add or replace, by id."""

    documents: Documents
    batch_size: BatchSize = 32
    backend: Backend | None = None
    """Used by the upsert that binds the collection to a model version; later ones must match that version's."""

    @property
    def texts(self) -> list[str]:
        return [document.text for document in self.documents]


class DeleteRequest(CollectionRequest):
    """Documents to delete, by id."""

    ids: Ids


class BuildRequest(CollectionRequest):
    """A new index version of every live document, made active."""

    kind: IndexKind = "auto"
    params: IndexParams | None = None


class SearchRequest(CollectionRequest):
    """Queries against a collection's active index and its delta."""

    queries: Texts
    k: int = Field(10, ge=1)
    filter: Filter | None = None
    threshold: float | None = Field(None, allow_inf_nan=False)
    include: Annotated[list[Include], AfterValidator(lambda found: list(dict.fromkeys(found)))] = Field(
        default_factory=lambda: list(INCLUDE)
    )
    batch_size: BatchSize = 32
    rerank: ModelName | None = None
    """A registered cross-encoder that rescores the best ``rerank_top`` hits of each query."""
    rerank_top: int = Field(50, ge=1)
    """Candidates a rerank rescores: never fewer than ``k``."""

    @field_validator("rerank_top")
    @classmethod
    def _at_least_k(cls, value: int, info: ValidationInfo) -> int:
        return max(value, info.data.get("k", value))

    @model_validator(mode="after")
    def _fits(self, info: ValidationInfo) -> SearchRequest:
        context = context_of(info)
        limits = context.limits
        if len(self.queries) > limits.max_queries:
            raise LimitExceeded(
                f"queries: {len(self.queries):,} is over the limit of {limits.max_queries:,} per search (max_queries)",
                detail={"field": "queries", "limit": "max_queries", "max": limits.max_queries},
            )
        asked = self.rerank_top if self.rerank is not None else self.k
        if asked > limits.max_k:
            raise LimitExceeded(
                f"k: {asked} is over the limit of {limits.max_k} (max_k)",
                detail={"field": "k", "limit": "max_k", "max": limits.max_k},
            )
        if context.catalog is not None and self.rerank is not None:
            context.catalog.cross_encoder(self.rerank)
        return self


class ReindexRequest(CollectionRequest):
    """Re-embed every document (with ``model``, or the collection's own), build, check the recall, swap."""

    model: ModelName | None = None
    kind: IndexKind = "auto"
    params: IndexParams | None = None
    min_recall: float = Field(0.95, ge=0.0, le=1.0)
    batch_size: BatchSize = 32
    backend: Backend | None = None
    """What computes the new model version's vectors (``None``: the worker's setting)."""
    id_from: str | None = None
    """A chunk's first document id: set by the service when it splits a reindex, never by a request."""
    id_to: str | None = None
    """The first document id after a chunk's range (``None``: to the end); set by the service only."""

    @field_validator("id_from", "id_to")
    @classmethod
    def _internal(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not context_of(info).internal:
            raise BadRequest(
                f"{info.field_name}: only the service sets it, on the chunks of a reindex it splits",
                detail={"field": info.field_name},
            )
        return value

    @model_validator(mode="after")
    def _model_exists(self, info: ValidationInfo) -> ReindexRequest:
        found = context_of(info).catalog
        if found is not None and self.model is not None and self.model not in catalog.BUNDLED:
            found.model(self.model)
        return self


# ---------------------------------------------------------------- the kinds


def split_reindex(conn: psycopg.Connection, request: dict[str, Any], size: int) -> list[Chunk] | None:
    """Chunks of ``size`` documents in id order: each re-embeds its range with the new model."""
    collection = collections_store.describe(conn=conn, name=request["collection"])
    starts = collections_store.chunk_starts(conn=conn, collection_id=collection["id"], size=size)
    if len(starts) < 2:
        return None
    bounds = [*starts[1:], None]
    return [
        Chunk({**request, "id_from": start, "id_to": stop}, min(size, collection["size"] - i * size), i * size)
        for i, (start, stop) in enumerate(zip(starts, bounds, strict=True))
    ]


UPSERT = declare(
    Kind(
        name="upsert",
        request=UpsertRequest,
        read_result=results.read_summary,
        output="documents of the collection (the summary counts them)",
        text_fields=("texts",),
        split=lambda _conn, request, size: split_list(request, "documents", size),
        merge=summing("count", "cached", "encoded", "changed"),
    )
)
DELETE = declare(
    Kind(
        name="delete",
        request=DeleteRequest,
        read_result=results.read_summary,
        output="documents of the collection (the summary counts them)",
        text_fields=("ids",),
        lane="interactive",
    )
)
BUILD_INDEX = declare(
    Kind(
        name="build_index",
        request=BuildRequest,
        read_result=results.read_summary,
        output="index_versions (the summary names the version)",
        lane="batch",
    )
)
SEARCH = declare(
    Kind(
        name="search",
        request=SearchRequest,
        read_result=results.read_hits,
        output="search_results: hits (jsonb) by item (query)",
        text_fields=("queries",),
        lane="interactive",
    )
)
REINDEX = declare(
    Kind(
        name="reindex",
        request=ReindexRequest,
        read_result=results.read_summary,
        output="index_versions and collections (the summary names the new version and its gate)",
        lane="batch",
        split=split_reindex,
        finalize=True,
    )
)


# ---------------------------------------------------------------- the client's methods


@client_method
def upsert(
    self: EmbedQ,
    name: str,
    documents: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 32,
    idempotency_key: str | None = None,
    lane: str | None = None,
    backend: str | None = None,
) -> Job:
    """Add or replace documents ``{"id", "text", "metadata"}``; searchable once the job succeeded.

    Texts go through the embedding cache (unchanged texts cost nothing); an
    id that exists gets the new text and metadata. ``backend`` chooses what computes the vectors when
    this upsert binds the collection's model version (its first); later upserts compute with the bound
    version's backend, and naming another is a ``ModelMismatch``.
    """
    raw = {
        "collection": name,
        "documents": [dict(doc) if isinstance(doc, Mapping) else doc for doc in documents]
        if isinstance(documents, list | tuple)
        else documents,
        "batch_size": batch_size,
        "backend": backend,
    }
    return self.submit("upsert", raw, idempotency_key=idempotency_key, lane=lane, hardware=self._hardware(name))


@client_method
def delete(self: EmbedQ, name: str, ids: Sequence[str], *, idempotency_key: str | None = None) -> Job:
    """Delete documents by id; they leave search results as soon as the job succeeded."""
    raw = {"collection": name, "ids": self.listed(ids)}
    return self.submit("delete", raw, idempotency_key=idempotency_key, lane=None, hardware=self._hardware(name))


@client_method
def build_index(
    self: EmbedQ,
    name: str,
    *,
    kind: str = "auto",
    params: Mapping[str, int] | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """Build a FAISS index of the collection (``flat``, ``hnsw``, ``ivf``, or ``auto`` by size); make it active."""
    raw = {"collection": name, "kind": kind, "params": dict(params) if isinstance(params, Mapping) else params}
    return self.submit("build_index", raw, idempotency_key=idempotency_key, lane=None, hardware=self._hardware(name))


@client_method
def search(
    self: EmbedQ,
    name: str,
    queries: Sequence[str],
    *,
    k: int = 10,
    filter: Mapping[str, Any] | None = None,
    threshold: float | None = None,
    include: Sequence[str] = ("text", "metadata"),
    rerank: str | None = None,
    rerank_top: int = 50,
    batch_size: int = 32,
    lane: str | None = None,
) -> Job:
    """Search the collection: ``result()`` is one list of hits per query, best first.

    A hit is ``{"id", "score", "text", "metadata"}`` (``include`` picks the last two). ``filter`` keeps
    documents whose metadata has each key equal to the value given; ``threshold`` drops hits scoring less.
    ``rerank`` names a registered cross-encoder that rescores the best ``rerank_top`` hits of each query:
    a hit's ``score`` is then the cross-encoder's, and ``retrieval_score`` the index's.
    """
    raw = {
        "collection": name,
        "queries": self.listed(queries),
        "k": k,
        "filter": dict(filter) if isinstance(filter, Mapping) else filter,
        "threshold": threshold,
        "include": self.listed(include),
        "rerank": rerank,
        "rerank_top": rerank_top,
        "batch_size": batch_size,
    }
    return self.submit("search", raw, idempotency_key=None, lane=lane, hardware=self._hardware(name))


@client_method
def reindex(
    self: EmbedQ,
    name: str,
    *,
    model: str | None = None,
    kind: str = "auto",
    params: Mapping[str, int] | None = None,
    min_recall: float = 0.95,
    idempotency_key: str | None = None,
    backend: str | None = None,
) -> Job:
    """Re-embed every document (with ``model``, or the collection's own), build, check and swap.

    Runs in the background as chunk jobs over the fleet; searches keep
    answering from the old version until the swap. The new index becomes
    active only if its recall@10 against exact search, on a sample of the
    collection's own documents as queries, is at least ``min_recall``.
    ``backend`` chooses what computes the new version (default: the worker's choice).
    """
    raw = {
        "collection": name,
        "model": model,
        "kind": kind,
        "params": dict(params) if isinstance(params, Mapping) else params,
        "min_recall": min_recall,
        "backend": backend,
    }
    return self.submit("reindex", raw, idempotency_key=idempotency_key, lane=None, hardware=self._hardware(name))
