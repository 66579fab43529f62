"""Writing the embedding cache (read by ``api_client.store.embeddings``); encode outputs are written with
the job's final state (``embedq.worker.store.jobs.write_encode_outputs``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from embedq.worker.store.copy import embedding_rows

_STAGE = "embedq_stage_embeddings"


class Float4Array:
    """Float32 values sent as one binary ``real[]`` parameter, flattened.

    psycopg dumps a Python list float by float (about 3 ms for two vectors of
    384 dimensions); this dumps the whole array with numpy (about 0.1 ms).
    """

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


class _Float4ArrayDumper(Dumper):
    """PostgreSQL's binary array format: ndim, no nulls, element oid, (size, lower bound), then (length, value)s."""

    format = Format.BINARY
    oid = psycopg.postgres.types["float4"].array_oid
    _element = psycopg.postgres.types["float4"].oid

    def dump(self, obj: Float4Array) -> bytes:
        flat = np.asarray(obj.values, dtype=np.float32).ravel()
        if not flat.size:
            return np.array([0, 0, self._element], dtype=">i4").tobytes()
        items = np.empty(flat.size, dtype=[("length", ">i4"), ("value", ">f4")])
        items["length"] = 4
        items["value"] = flat
        return np.array([1, 0, self._element, flat.size, 1], dtype=">i4").tobytes() + items.tobytes()


psycopg.adapters.register_dumper(Float4Array, _Float4ArrayDumper)


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
    body = embedding_rows(model_id, [keys[i] for i in order], vectors[order])
    table = "embeddings"
    if skip_existing:
        table = _STAGE
        conn.execute(f"CREATE TEMP TABLE {_STAGE} (LIKE embeddings) ON COMMIT DROP")
    with conn.cursor().copy(f"COPY {table} (model_id, text_sha256, embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(body)
    if skip_existing:
        conn.execute(f"INSERT INTO embeddings SELECT * FROM {_STAGE} ON CONFLICT DO NOTHING")
