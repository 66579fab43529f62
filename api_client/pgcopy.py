"""PostgreSQL binary COPY for fixed-width rows, built and parsed with numpy.

Rows of embeddings have the same width every time, so a whole
COPY body is one numpy structured array: no per-row Python. pgvector's binary
form of ``vector`` is ``int16 dim, int16 unused, float32[dim]``, big-endian.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = b"\xff\xff"


def _vector_dtype(dim: int) -> np.dtype:
    return np.dtype([("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,))])


def _row_dtype(fields: Sequence[tuple[str, np.dtype]]) -> np.dtype:
    layout: list[tuple[str, object]] = [("count", ">i2")]
    for name, dtype in fields:
        layout += [(f"{name}_len", ">i4"), (name, dtype)]
    return np.dtype(layout)


def _body(fields: Sequence[tuple[str, np.dtype, object]], n: int) -> bytes:
    rows = np.zeros(n, dtype=_row_dtype([(name, dtype) for name, dtype, _ in fields]))
    rows["count"] = len(fields)
    for name, dtype, values in fields:
        rows[f"{name}_len"] = dtype.itemsize
        if dtype.names and "values" in dtype.names:
            vectors = np.asarray(values, dtype=np.float32)
            rows[name]["dim"] = vectors.shape[1]
            rows[name]["values"] = vectors
        else:
            rows[name] = values
    return HEADER + rows.tobytes() + TRAILER


def embedding_rows(model_id: int, hashes: Sequence[bytes], vectors: np.ndarray) -> bytes:
    """COPY body for ``(model_id int4, text_sha256 bytea, embedding vector)``."""
    n, dim = vectors.shape
    return _body(
        [
            ("model_id", np.dtype(">i4"), model_id),
            ("sha", np.dtype("S32"), np.array(hashes, dtype="S32")),
            ("embedding", _vector_dtype(dim), vectors),
        ],
        n,
    )


def parse_vectors(body: bytes) -> np.ndarray:
    """Parse ``COPY (SELECT <one vector column> ...) TO STDOUT (FORMAT BINARY)`` into float32 ``[n, dim]``."""
    if not body.startswith(HEADER[:11]):
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(body[15:19], "big")
    start = 19 + extension
    end = len(body) - len(TRAILER)
    if end <= start:
        return np.zeros((0, 0), dtype=np.float32)
    dim = int.from_bytes(body[start + 6 : start + 8], "big", signed=True)
    rows = np.frombuffer(body[start:end], dtype=_row_dtype([("embedding", _vector_dtype(dim))]))
    if np.any(rows["embedding_len"] != 4 + 4 * dim):
        raise ValueError("vectors of different dimensions, or NULLs, in one COPY stream")
    return rows["embedding"]["values"].astype(np.float32)
