"""Reading the embedding cache and encode outputs with binary COPY.

``embeddings`` holds each text's raw model output keyed by (model id, text
sha256): written once per model version and text, whichever job or worker
computes it first. ``encode_outputs`` lists a job's items in input order by
their text key; a job's vectors are the join of the two. The writes live in
``embedq.worker.store.embeddings``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from api_client import pgcopy


def copy_out_vectors(conn: psycopg.Connection, query: str, params: tuple[object, ...]) -> np.ndarray:
    """The vectors a query returns (one `vector` column), read with binary COPY."""
    cursor = conn.cursor()
    chunks: list[bytes] = []
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy:
        for chunk in copy:
            chunks.append(bytes(chunk))
    return pgcopy.parse_vectors(b"".join(chunks))


def read_job_vectors(*, conn: psycopg.Connection, job_id: str, count: int) -> np.ndarray:
    """The raw vectors of a finished encode job, in input order."""
    vectors = copy_out_vectors(
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
    vectors = copy_out_vectors(
        conn,
        "SELECT e.embedding FROM unnest(%s::bytea[]) WITH ORDINALITY AS k(text_sha256, n) "
        "JOIN embeddings e ON e.model_id = %s AND e.text_sha256 = k.text_sha256 ORDER BY k.n",
        (list(keys), model_id),
    )
    if len(vectors) != len(keys):
        raise RuntimeError(f"{len(keys) - len(vectors)} of {len(keys)} keys are not in the cache")
    return vectors
