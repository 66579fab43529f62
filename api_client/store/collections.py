"""The client's queries of collections: create, describe, list, and the reindex chunk boundaries."""

from __future__ import annotations

from typing import Any

import psycopg

from api_client.errors import BadRequest, UnknownCollection

_DESCRIBE = """
SELECT c.id, c.name, c.model, c.model_id, m.version, m.dimension, c.normalize, c.created_at,
       (SELECT count(*) FROM documents d WHERE d.collection_id = c.id AND NOT d.deleted),
       (SELECT count(*) FROM documents d WHERE d.collection_id = c.id AND d.seq > coalesce(i.max_seq, 0)),
       i.id, i.version, i.kind, i.count, i.max_seq, i.params, i.metrics, i.created_at, m.dtype
FROM collections c
LEFT JOIN models m ON m.id = c.model_id
LEFT JOIN index_versions i ON i.id = c.active_index_id
"""


def _describe(row: tuple[Any, ...]) -> dict[str, Any]:
    index = None
    if row[10] is not None:
        index = {
            "id": row[10],
            "version": row[11],
            "kind": row[12],
            "count": row[13],
            "max_seq": row[14],
            "params": row[15],
            "metrics": row[16],
            "created_at": row[17].isoformat(),
        }
    return {
        "id": row[0],
        "name": row[1],
        "model": row[2],
        "model_id": row[3],
        "model_version": row[4],
        "dimension": row[5],
        "normalize": row[6],
        "metric": "cosine" if row[6] else "dot",
        "created_at": row[7].isoformat(),
        "size": row[8],
        "pending": row[9],
        "active_index": index,
        "dtype": row[18],
    }


def create_collection(
    *, conn: psycopg.Connection, name: str, model: str, normalize: bool
) -> tuple[dict[str, Any], bool]:
    """Create the collection; an existing one with the same model and normalization is returned as it is.

    Returns the description and whether it is new; ``BadRequest`` when the name
    is taken by a collection of another model or normalization.
    """
    row = conn.execute(
        "INSERT INTO collections (name, model, normalize) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING "
        "RETURNING id",
        (name, model, normalize),
    ).fetchone()
    info = describe(conn=conn, name=name)
    if row is None and (info["model"], info["normalize"]) != (model, normalize):
        raise BadRequest(
            f"collection {name!r} exists with model {info['model']!r} and normalize={info['normalize']}; "
            "use another name, or reindex it to change its model",
            detail={"field": "collection", "collection": name},
        )
    return info, row is not None


def describe(*, conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """Size, model version, active index version and pending delta of one collection."""
    row = conn.execute(_DESCRIBE + " WHERE c.name = %s", (name,)).fetchone()
    if row is None:
        raise _unknown(conn, name)
    return _describe(row)


def brief(*, conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """What submitting a job needs of a collection (id, model, dtype): one indexed read, no counting."""
    row = conn.execute(
        "SELECT c.id, c.model, m.dtype FROM collections c LEFT JOIN models m ON m.id = c.model_id WHERE c.name = %s",
        (name,),
    ).fetchone()
    if row is None:
        raise _unknown(conn, name)
    return {"id": row[0], "name": name, "model": row[1], "dtype": row[2]}


def _unknown(conn: psycopg.Connection, name: str) -> UnknownCollection:
    known = [r[0] for r in conn.execute("SELECT name FROM collections ORDER BY name LIMIT 20").fetchall()]
    return UnknownCollection(
        f"collection: no collection {name!r} (collections: {', '.join(known) or 'none'}); "
        "create it with create_collection",
        detail={"field": "collection", "collection": name},
    )


def list_collections(*, conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [_describe(row) for row in conn.execute(_DESCRIBE + " ORDER BY c.name").fetchall()]


def chunk_starts(*, conn: psycopg.Connection, collection_id: int, size: int) -> list[str]:
    """The external id that starts every ``size`` documents (in id order): a reindex's chunk boundaries."""
    rows = conn.execute(
        "SELECT external_id FROM (SELECT external_id, row_number() OVER (ORDER BY external_id) AS n "
        "FROM documents WHERE collection_id = %s AND NOT deleted) numbered WHERE (n - 1) %% %s = 0 "
        "ORDER BY external_id",
        (collection_id, size),
    ).fetchall()
    return [row[0] for row in rows]
