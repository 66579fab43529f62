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


def write_embeddings(*, conn: psycopg.Connection, model_id: int, keys: Sequence[bytes], vectors: np.ndarray) -> None:
    """Add vectors to the cache; keys already there are left as they are."""
    if not len(keys):
        return
    with conn.transaction():
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
            "(model_id int NOT NULL, text_sha256 bytea NOT NULL, embedding vector NOT NULL) ON COMMIT DELETE ROWS"
        )
        with conn.cursor().copy(f"COPY {_STAGE} FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(pgcopy.embedding_rows(model_id, keys, vectors))
        conn.execute(
            f"INSERT INTO embeddings (model_id, text_sha256, embedding) SELECT model_id, text_sha256, embedding "
            f"FROM {_STAGE} ON CONFLICT DO NOTHING"
        )


def write_outputs(*, conn: psycopg.Connection, job_id: str, model_id: int, keys: Sequence[bytes]) -> None:
    """Record the job's items, in input order, by their cache key."""
    with conn.cursor().copy(
        "COPY encode_outputs (job_id, item, model_id, text_sha256) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.write(pgcopy.output_rows(job_id, model_id, keys))


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
