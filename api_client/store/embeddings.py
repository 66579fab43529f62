"""The embedding cache and encode outputs, moved with binary COPY.

``embeddings`` holds each text's raw model output keyed by (model id, text
sha256): written once per model version and text, whichever job or worker
computes it first. ``encode_outputs`` lists a job's items in input order by
their text key; a job's vectors are the join of the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from api_client import pgcopy

_STAGE = "embedq_stage_embeddings"


def cached_keys(*, conn: psycopg.Connection, model_id: int, keys: Sequence[bytes]) -> set[bytes]:
    """The subset of ``keys`` already in the cache for this model."""
    if not keys:
        return set()
    rows = conn.execute(
        "SELECT text_sha256 FROM embeddings WHERE model_id = %s AND text_sha256 = ANY(%s)",
        (model_id, list(keys)),
    ).fetchall()
    return {bytes(row[0]) for row in rows}


def write_embeddings(
    *, conn: psycopg.Connection, model_id: int, keys: Sequence[bytes], vectors: np.ndarray, skip_existing: bool = False
) -> None:
    """Add vectors to the cache with one binary COPY.

    By default the keys must be new (the caller checked ``cached_keys``): a key
    that another worker stored meanwhile raises ``UniqueViolation``, and the
    caller repeats its transaction with ``skip_existing=True``, which copies
    into a staging table and inserts with ``ON CONFLICT DO NOTHING``.
    """
    if not len(keys):
        return
    # Rows in key order: two workers copying overlapping keys then lock them in the same order.
    order = sorted(range(len(keys)), key=keys.__getitem__)
    body = pgcopy.embedding_rows(model_id, [keys[i] for i in order], vectors[order])
    table = "embeddings"
    if skip_existing:
        table = _STAGE
        conn.execute(f"CREATE TEMP TABLE {_STAGE} (LIKE embeddings) ON COMMIT DROP")
    with conn.cursor().copy(f"COPY {table} (model_id, text_sha256, embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(body)
    if skip_existing:
        conn.execute(f"INSERT INTO embeddings SELECT * FROM {_STAGE} ON CONFLICT DO NOTHING")


def write_outputs(*, conn: psycopg.Connection, job_id: str, model_id: int, keys: Sequence[bytes]) -> None:
    """Record the job's items, in input order (item 0, 1, ...), by their cache key: one statement."""
    conn.execute(
        "INSERT INTO encode_outputs (job_id, item, model_id, text_sha256) "
        "SELECT %s, k.n - 1, %s, k.text_sha256 FROM unnest(%s::bytea[]) WITH ORDINALITY AS k(text_sha256, n)",
        (job_id, model_id, list(keys)),
    )


def _copy_out(conn: psycopg.Connection, query: str, params: tuple[object, ...]) -> np.ndarray:
    cursor = conn.cursor()
    chunks: list[bytes] = []
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy:
        for chunk in copy:
            chunks.append(bytes(chunk))
    return pgcopy.parse_vectors(b"".join(chunks))


def read_job_vectors(*, conn: psycopg.Connection, job_id: str, count: int) -> np.ndarray:
    """The raw vectors of a finished encode job, in input order."""
    vectors = _copy_out(
        conn,
        "SELECT e.embedding FROM encode_outputs o JOIN embeddings e USING (model_id, text_sha256) "
        "WHERE o.job_id = %s ORDER BY o.item",
        (job_id,),
    )
    if len(vectors) != count:
        raise RuntimeError(f"job {job_id} has {len(vectors)} stored vectors, expected {count}")
    return vectors


def read_vectors(*, conn: psycopg.Connection, model_id: int, keys: Sequence[bytes]) -> np.ndarray:
    """Cached raw vectors for ``keys``, in the order given (every key must be cached)."""
    vectors = _copy_out(
        conn,
        "SELECT e.embedding FROM unnest(%s::bytea[]) WITH ORDINALITY AS k(text_sha256, n) "
        "JOIN embeddings e ON e.model_id = %s AND e.text_sha256 = k.text_sha256 ORDER BY k.n",
        (list(keys), model_id),
    )
    if len(vectors) != len(keys):
        raise RuntimeError(f"{len(keys) - len(vectors)} of {len(keys)} keys are not in the cache")
    return vectors
