"""PostgreSQL binary COPY of vectors, parsed with numpy (the worker builds them: ``embedq.worker.store.copy``).

Rows of embeddings have the same width every time, so a whole
COPY body is one numpy structured array: no per-row Python. pgvector's binary
form of ``vector`` is ``int16 dim, int16 unused, float32[dim]``, big-endian.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = b"\xff\xff"


def vector_dtype(dim: int) -> np.dtype:
    return np.dtype([("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,))])


def row_dtype(fields: Sequence[tuple[str, np.dtype]]) -> np.dtype:
    layout: list[tuple[str, object]] = [("count", ">i2")]
    for name, dtype in fields:
        layout += [(f"{name}_len", ">i4"), (name, dtype)]
    return np.dtype(layout)


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
    rows = np.frombuffer(body[start:end], dtype=row_dtype([("embedding", vector_dtype(dim))]))
    if np.any(rows["embedding_len"] != 4 + 4 * dim):
        raise ValueError("vectors of different dimensions, or NULLs, in one COPY stream")
    return rows["embedding"]["values"].astype(np.float32)
