"""The client's collection methods: create, describe, upsert, delete, build, search, reindex.

``EmbedQ`` inherits them. Creating and describing a collection are queries;
everything that embeds, writes documents or builds an index is a job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from api_client.schemas_collections import check_collection_name, parse_collection_options
from api_client.store import collections as collections_store

if TYPE_CHECKING:
    from api_client.job import Job


def hardware_of(info: Mapping[str, Any]) -> str:
    """The hardware class whose workers compute a collection's model version: float16 vectors come from
    GPU workers, float32 from CPU workers (a collection not bound yet starts on CPU)."""
    return "gpu" if info.get("dtype") == "float16" else "cpu"


class CollectionsMixin:
    """Collections of documents bound to one model version, with FAISS indexes and search jobs.

    Every job of a collection goes to the hardware class of its model version
    (``hardware_of``), so a GPU worker never writes float16 vectors into a
    float32 collection, nor the other way round.
    """

    _run: Callable[..., Any]
    submit: Callable[..., Job]
    listed: Callable[[Any], Any]

    def create_collection(self, name: str, *, model: str = "all-MiniLM-L6-v2", normalize: bool = True) -> dict:
        """Create a collection (or return the existing one with the same model and normalization).

        Its model version is bound by its first upsert. ``normalize=True``
        scores by cosine similarity, ``False`` by dot product.
        """
        options = parse_collection_options({"model": model, "normalize": normalize})
        self._check_model(options)  # type: ignore[attr-defined]
        name = check_collection_name(name)
        info, _ = self._run(
            lambda conn: collections_store.create_collection(
                conn=conn, name=name, model=options.model, normalize=options.normalize
            )
        )
        return info

    def collection(self, name: str) -> dict:
        """Size, model version, active index version and pending delta of a collection (``UnknownCollection``)."""
        return self._run(lambda conn: collections_store.describe(conn=conn, name=check_collection_name(name)))

    def _brief(self, name: str) -> dict:
        """The collection's id, model and dtype, or ``UnknownCollection``: checked before any job is queued."""
        return self._run(lambda conn: collections_store.brief(conn=conn, name=check_collection_name(name)))

    def collections(self) -> list[dict]:
        """Every collection, described as ``collection()`` describes one."""
        return self._run(lambda conn: collections_store.list_collections(conn=conn))

    def upsert(
        self,
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
        info = self._brief(name)
        raw = {
            "collection": name,
            "documents": [dict(doc) if isinstance(doc, Mapping) else doc for doc in documents]
            if isinstance(documents, list | tuple)
            else documents,
            "batch_size": batch_size,
            "backend": backend,
        }
        return self.submit("upsert", raw, idempotency_key=idempotency_key, lane=lane, hardware=hardware_of(info))

    def delete(self, name: str, ids: Sequence[str], *, idempotency_key: str | None = None) -> Job:
        """Delete documents by id; they leave search results as soon as the job succeeded."""
        info = self._brief(name)
        raw = {"collection": name, "ids": list(ids) if isinstance(ids, list | tuple) else ids}
        return self.submit("delete", raw, idempotency_key=idempotency_key, lane=None, hardware=hardware_of(info))

    def build_index(
        self,
        name: str,
        *,
        kind: str = "auto",
        params: Mapping[str, int] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Build a FAISS index of the collection (``flat``, ``hnsw``, ``ivf``, or ``auto`` by size); make it active."""
        info = self._brief(name)
        raw = {"collection": name, "kind": kind, "params": dict(params) if params is not None else None}
        return self.submit("build_index", raw, idempotency_key=idempotency_key, lane=None, hardware=hardware_of(info))

    def search(
        self,
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
        info = self._brief(name)
        if rerank is not None:
            self._check_cross_encoder(rerank)  # type: ignore[attr-defined]
        raw = {
            "collection": name,
            "queries": list(queries) if isinstance(queries, list | tuple) else queries,
            "k": k,
            "filter": dict(filter) if isinstance(filter, Mapping) else filter,
            "threshold": threshold,
            "include": list(include) if isinstance(include, list | tuple) else include,
            "rerank": rerank,
            "rerank_top": rerank_top,
            "batch_size": batch_size,
        }
        return self.submit("search", raw, idempotency_key=None, lane=lane, hardware=hardware_of(info))

    def reindex(
        self,
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
        info = self._brief(name)
        raw = {
            "collection": name,
            "model": model,
            "kind": kind,
            "params": dict(params) if params is not None else None,
            "min_recall": min_recall,
            "backend": backend,
        }
        return self.submit("reindex", raw, idempotency_key=idempotency_key, lane=None, hardware=hardware_of(info))
