"""Binary COPY bodies of embeddings, built as one numpy structured array (see ``api_client.pgcopy``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from api_client.pgcopy import HEADER, TRAILER, row_dtype, vector_dtype


def _body(fields: Sequence[tuple[str, np.dtype, object]], n: int) -> bytes:
    rows = np.zeros(n, dtype=row_dtype([(name, dtype) for name, dtype, _ in fields]))
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
            ("embedding", vector_dtype(dim), vectors),
        ],
        n,
    )
