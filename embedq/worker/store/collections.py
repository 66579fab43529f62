"""The worker's queries of collections, documents and index versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from api_client.errors import ModelMismatch, UnknownCollection
from api_client.store.embeddings import copy_out_vectors

if TYPE_CHECKING:
    from api_client.kinds.collection_fields import Document

BUILD_LOCK = 0x656D6278  # "embx": advisory lock class of index builds, one key per collection


@dataclass(frozen=True)
class Collection:
    """A collection as a job sees it, with its active index version (if any)."""

    id: int
    name: str
    model: str
    model_id: int | None
    normalize: bool
    index_id: int | None
    index_path: str | None
    index_max_seq: int
    index_params: dict[str, Any]
    index_version: int | None = None
    index_sha256: str | None = None
    """The active version's folder sha256, recorded when it was published (``None`` for versions built before
    migration 0010)."""


def get_collection(*, conn: psycopg.Connection, name: str, lock: str = "") -> Collection:
    """The collection ``name`` (``UnknownCollection`` if there is none); ``lock`` e.g. ``FOR SHARE OF c``."""
    row = conn.execute(
        "SELECT c.id, c.name, c.model, c.model_id, c.normalize, i.id, i.artifact_path, coalesce(i.max_seq, 0), "
        "coalesce(i.params, '{}'::jsonb), i.version, i.sha256 "
        f"FROM collections c LEFT JOIN index_versions i ON i.id = c.active_index_id WHERE c.name = %s {lock}",
        (name,),
    ).fetchone()
    if row is None:
        raise UnknownCollection(
            f"collection: no collection {name!r}", detail={"field": "collection", "collection": name}
        )
    return Collection(*row)


def bind_model(*, conn: psycopg.Connection, collection: Collection, model_id: int) -> None:
    """Bind the collection to ``model_id`` on its first upsert; refuse vectors of any other version after that.

    Run inside the transaction that writes the documents, after locking the
    collection row (``FOR UPDATE``), so a reindex's swap cannot slip in between.
    """
    row = conn.execute(
        "UPDATE collections SET model_id = %s, updated_at = now() WHERE id = %s AND model_id IS NULL "
        "RETURNING model_id",
        (model_id, collection.id),
    ).fetchone()
    if row is None:
        row = conn.execute("SELECT model_id FROM collections WHERE id = %s", (collection.id,)).fetchone()
    bound = row[0] if row is not None else None
    if bound != model_id:
        raise ModelMismatch(
            f"collection {collection.name!r} holds vectors of model version {bound}, not {model_id} (the worker's "
            f"{collection.model!r}): a collection refuses vectors of another version; reindex it to change its model",
            detail={"collection": collection.name, "model_id": bound, "offered": model_id},
        )


_CHANGED = (
    "FROM unnest(%(ids)s::text[], %(texts)s::text[], %(metadata)s::jsonb[], %(keys)s::bytea[]) "
    "AS d(external_id, text, metadata, key) "
    "LEFT JOIN documents x ON x.collection_id = %(collection_id)s AND x.external_id = d.external_id "
    "WHERE x.external_id IS NULL OR (x.text_sha256, x.metadata, x.deleted, x.model_id, x.text) "
    "IS DISTINCT FROM (d.key, d.metadata, false, %(model_id)s::bigint, d.text)"
)
"""The upserted documents that would change: new, or with another text, metadata or model version, or deleted."""


def _documents(collection_id: int, model_id: int, documents: Sequence[Document], keys: list[bytes]) -> dict[str, Any]:
    return {
        "collection_id": collection_id,
        "model_id": model_id,
        "ids": [doc.id for doc in documents],
        "texts": [doc.text for doc in documents],
        "metadata": [Jsonb(doc.metadata) for doc in documents],
        "keys": keys,
    }


def changed_documents(
    *, conn: psycopg.Connection, collection_id: int, model_id: int, documents: Sequence[Document], keys: list[bytes]
) -> int:
    """How many of ``documents`` an upsert would change now (``upsert_documents`` changes exactly those)."""
    row = conn.execute("SELECT count(*) " + _CHANGED, _documents(collection_id, model_id, documents, keys)).fetchone()
    return int(row[0]) if row else 0


def upsert_documents(
    *, conn: psycopg.Connection, collection_id: int, model_id: int, documents: Sequence[Document], keys: list[bytes]
) -> int:
    """Insert or replace the documents that change (new, new text or metadata, or undeleted); returns how many.

    Run it holding the collection row ``FOR UPDATE``, as every writer of its
    documents does, so the documents it reads as unchanged stay so.
    """
    rows = conn.execute(
        "INSERT INTO documents (collection_id, external_id, text, metadata, model_id, text_sha256) "
        "SELECT %(collection_id)s, d.external_id, d.text, d.metadata, %(model_id)s, d.key " + _CHANGED + " "
        "ON CONFLICT (collection_id, external_id) DO UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata, "
        "model_id = EXCLUDED.model_id, text_sha256 = EXCLUDED.text_sha256, deleted = false, "
        "seq = nextval('documents_seq'), updated_at = now() "
        "RETURNING 1",
        _documents(collection_id, model_id, documents, keys),
    ).fetchall()
    return len(rows)


_LIVE_AMONG = "collection_id = %s AND external_id = ANY(%s) AND NOT deleted"


def live_among(*, conn: psycopg.Connection, collection_id: int, ids: list[str]) -> int:
    """How many of ``ids`` are live documents: what ``delete_documents`` would delete now."""
    row = conn.execute("SELECT count(*) FROM documents WHERE " + _LIVE_AMONG, (collection_id, ids)).fetchone()
    return int(row[0]) if row else 0


def delete_documents(*, conn: psycopg.Connection, collection_id: int, ids: list[str]) -> int:
    """Mark documents deleted (tombstones until the next build); returns how many were live."""
    rows = conn.execute(
        "UPDATE documents SET deleted = true, seq = nextval('documents_seq'), updated_at = now() "
        "WHERE " + _LIVE_AMONG + " RETURNING 1",
        (collection_id, ids),
    ).fetchall()
    return len(rows)


@dataclass(frozen=True)
class Snapshot:
    """Every live document of a collection as of one moment: ids, seqs and raw vectors in seq order."""

    ids: list[str]
    seqs: np.ndarray
    vectors: np.ndarray
    max_seq: int


class StillMissing(Exception):
    """Documents written meanwhile have no vector under the model a reindex moves to: embed them, try again."""


def snapshot(*, conn: psycopg.Connection, collection_id: int, model_id: int) -> Snapshot:
    """The live documents and their vectors under ``model_id``, as of one moment.

    Writers of a collection's documents hold its row ``FOR UPDATE``; holding it
    ``FOR SHARE`` here keeps them out while the three reads run, so they agree.
    Raises ``StillMissing`` when a live document has no vector under ``model_id``
    (the join then returns fewer vectors than there are documents).
    """
    with conn.transaction():
        conn.execute("SELECT 1 FROM collections WHERE id = %s FOR SHARE", (collection_id,))
        head = conn.execute("SELECT coalesce(max(seq), 0) FROM documents WHERE collection_id = %s", (collection_id,))
        max_seq = int(head.fetchone()[0])  # type: ignore[index]
        rows = conn.execute(
            "SELECT external_id, seq FROM documents WHERE collection_id = %s AND NOT deleted ORDER BY seq",
            (collection_id,),
        ).fetchall()
        vectors = copy_out_vectors(
            conn,
            "SELECT e.embedding FROM documents d JOIN embeddings e "
            "ON e.model_id = %s AND e.text_sha256 = d.text_sha256 "
            "WHERE d.collection_id = %s AND NOT d.deleted ORDER BY d.seq",
            (model_id, collection_id),
        )
    if len(vectors) != len(rows):
        raise StillMissing(collection_id)
    return Snapshot([row[0] for row in rows], np.array([row[1] for row in rows], dtype=np.int64), vectors, max_seq)


def build_lock(conn: psycopg.Connection, collection_id: int) -> None:
    """Wait for, then hold, the session lock that lets one build of a collection run at a time."""
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (BUILD_LOCK, collection_id))


def build_unlock(conn: psycopg.Connection, collection_id: int) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (BUILD_LOCK, collection_id))


def missing_vectors(
    *, conn: psycopg.Connection, collection_id: int, model_id: int, limit: int
) -> list[tuple[bytes, str]]:
    """``(text key, text)`` of live documents with no vector under ``model_id`` yet (a reindex's remainder)."""
    rows = conn.execute(
        "SELECT DISTINCT d.text_sha256, d.text FROM documents d WHERE d.collection_id = %s AND NOT d.deleted "
        "AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = %s AND e.text_sha256 = d.text_sha256) "
        "LIMIT %s",
        (collection_id, model_id, limit),
    ).fetchall()
    return [(bytes(key), text) for key, text in rows]


def texts_in_range(
    *, conn: psycopg.Connection, collection_id: int, id_from: str | None, id_to: str | None
) -> list[str]:
    """Texts of the live documents with ids in ``[id_from, id_to)``: one reindex chunk."""
    rows = conn.execute(
        "SELECT text FROM documents WHERE collection_id = %s AND NOT deleted "
        "AND (%s::text IS NULL OR external_id >= %s) AND (%s::text IS NULL OR external_id < %s) ORDER BY external_id",
        (collection_id, id_from, id_from, id_to, id_to),
    ).fetchall()
    return [row[0] for row in rows]


def reserve_index_version(
    *, conn: psycopg.Connection, collection_id: int, kind: str, model_id: int, job_id: str
) -> tuple[int, int]:
    """A new ``building`` index version row: ``(id, version)``.

    Versions an earlier attempt of the same job left ``building`` (its process was killed, or its
    activation was refused) are marked ``failed`` first: only the claim holder builds for a job.
    """
    conn.execute(
        "UPDATE index_versions SET status = 'failed', metrics = metrics || %s "
        "WHERE job_id = %s AND status = 'building'",
        (Jsonb({"error": "an earlier attempt of its job stopped before the version was activated"}), job_id),
    )
    row = conn.execute(
        "INSERT INTO index_versions (collection_id, version, kind, model_id, job_id) "
        "SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s FROM index_versions WHERE collection_id = %s "
        "RETURNING id, version",
        (collection_id, kind, model_id, job_id, collection_id),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def activate_index(
    *,
    conn: psycopg.Connection,
    collection_id: int,
    index_id: int,
    path: str,
    sha256: str,
    params: dict[str, Any],
    count: int,
    max_seq: int,
    metrics: dict[str, Any],
    model: tuple[str, int] | None = None,
) -> None:
    """Mark the version ready and make it the collection's active one; fold tombstones up to ``max_seq`` in.

    With ``model`` (name, id), a reindex's swap: the collection and its
    documents move to that model version in the same transaction.
    """
    conn.execute(
        "UPDATE index_versions SET status = 'ready', kind = coalesce(%s, kind), artifact_path = %s, sha256 = %s, "
        "params = %s, count = %s, max_seq = %s, metrics = %s WHERE id = %s",
        (params.get("kind"), path, sha256, Jsonb(params), count, max_seq, Jsonb(metrics), index_id),
    )
    if model is not None:
        conn.execute(
            "UPDATE documents SET model_id = %s WHERE collection_id = %s AND model_id <> %s",
            (model[1], collection_id, model[1]),
        )
        conn.execute(
            "UPDATE collections SET model = %s, model_id = %s WHERE id = %s", (model[0], model[1], collection_id)
        )
    conn.execute(
        "UPDATE collections SET active_index_id = %s, updated_at = now() WHERE id = %s", (index_id, collection_id)
    )
    conn.execute("DELETE FROM documents WHERE collection_id = %s AND deleted AND seq <= %s", (collection_id, max_seq))


def fail_index(*, conn: psycopg.Connection, index_id: int, metrics: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE index_versions SET status = 'failed', metrics = %s WHERE id = %s AND status = 'building'",
        (Jsonb(metrics), index_id),
    )


@dataclass(frozen=True)
class Change:
    """A document changed since some seq: its current state (``vector`` is None once deleted)."""

    external_id: str
    seq: int
    vector: np.ndarray | None


def changes_since(*, conn: psycopg.Connection, collection_id: int, after_seq: int) -> list[Change]:
    """Documents whose seq is above ``after_seq`` (new, changed or deleted since then), in seq order.

    One indexed query when nothing changed (the common case); the vectors of
    what did change come with one binary COPY.
    """
    rows = conn.execute(
        "SELECT external_id, seq, deleted FROM documents WHERE collection_id = %s AND seq > %s ORDER BY seq",
        (collection_id, after_seq),
    ).fetchall()
    live = [row for row in rows if not row[2]]
    vectors = np.zeros((0, 0), dtype=np.float32)
    if live:
        vectors = copy_out_vectors(
            conn,
            "SELECT e.embedding FROM documents d JOIN embeddings e "
            "ON e.model_id = d.model_id AND e.text_sha256 = d.text_sha256 "
            "WHERE d.collection_id = %s AND d.seq = ANY(%s) AND NOT d.deleted ORDER BY d.seq",
            (collection_id, [row[1] for row in live]),
        )
        if len(vectors) != len(live):  # one changed again in between: read them all at the next search
            return []
    found = {row[1]: vector for row, vector in zip(live, vectors, strict=True)}
    return [Change(external_id, seq, found.get(seq)) for external_id, seq, _ in rows]


def details(*, conn: psycopg.Connection, collection_id: int, ids: list[str]) -> dict[str, tuple[str, dict]]:
    """``external id → (text, metadata)`` of live documents."""
    rows = conn.execute(
        "SELECT external_id, text, metadata FROM documents WHERE collection_id = %s AND external_id = ANY(%s) "
        "AND NOT deleted",
        (collection_id, ids),
    ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def matching(*, conn: psycopg.Connection, collection_id: int, where: dict[str, Any], limit: int) -> list[str] | None:
    """Ids of live documents whose metadata contains ``where``; ``None`` when more than ``limit`` match."""
    rows = conn.execute(
        "SELECT external_id FROM documents WHERE collection_id = %s AND NOT deleted AND metadata @> %s LIMIT %s",
        (collection_id, Jsonb(where), limit + 1),
    ).fetchall()
    return None if len(rows) > limit else [row[0] for row in rows]


def metadata_keys(*, conn: psycopg.Connection, collection_id: int, limit: int = 50) -> list[str]:
    """The metadata keys the collection's live documents use (at most ``limit``, sorted)."""
    rows = conn.execute(
        "SELECT DISTINCT k FROM documents, jsonb_object_keys(metadata) AS k "
        "WHERE collection_id = %s AND NOT deleted ORDER BY k LIMIT %s",
        (collection_id, limit),
    ).fetchall()
    return [row[0] for row in rows]


def vectors_of(*, conn: psycopg.Connection, collection_id: int, ids: list[str]) -> tuple[list[str], np.ndarray]:
    """The ids (in a fixed order) and raw vectors of live documents."""
    order = sorted(ids)
    vectors = copy_out_vectors(
        conn,
        "SELECT e.embedding FROM unnest(%s::text[]) WITH ORDINALITY AS k(external_id, n) "
        "JOIN documents d ON d.collection_id = %s AND d.external_id = k.external_id AND NOT d.deleted "
        "JOIN embeddings e ON e.model_id = d.model_id AND e.text_sha256 = d.text_sha256 ORDER BY k.n",
        (order, collection_id),
    )
    return order, vectors


def write_hits(*, conn: psycopg.Connection, job_id: str, hits: list[list[dict[str, Any]]]) -> None:
    """A search job's hits, one row per query; a second write (a duplicate delivery) changes nothing."""
    conn.execute(
        "INSERT INTO search_results (job_id, item, hits) SELECT %s, h.n - 1, h.hits "
        "FROM unnest(%s::jsonb[]) WITH ORDINALITY AS h(hits, n) ON CONFLICT DO NOTHING",
        (job_id, [Jsonb(query_hits) for query_hits in hits]),
    )


def allowed(*, conn: psycopg.Connection, collection_id: int, ids: list[str], where: dict[str, Any]) -> set[str]:
    """The ids among ``ids`` of live documents whose metadata contains ``where`` (JSON equality per key)."""
    rows = conn.execute(
        "SELECT external_id FROM documents WHERE collection_id = %s AND external_id = ANY(%s) AND NOT deleted "
        "AND metadata @> %s",
        (collection_id, ids, Jsonb(where)),
    ).fetchall()
    return {row[0] for row in rows}


def live_count(*, conn: psycopg.Connection, collection_id: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM documents WHERE collection_id = %s AND NOT deleted", (collection_id,)
    ).fetchone()
    return int(row[0]) if row else 0
