"""The client's reads of ``models`` (model versions) and their int8 calibration ranges.

A model version is a name bound to the sha256 of its folder's files, the
dtype it computes in and the backend that runs it. Writes live in
``embedq.worker.store.models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg


@dataclass(frozen=True)
class ModelRow:
    """One model version: a name bound to the sha256 of its files and the dtype it computes in."""

    id: int
    name: str
    version: str
    sha256: str
    dtype: str
    artifact_path: str
    dimension: int | None
    max_seq_length: int | None
    config: dict[str, Any]
    backend: str = "torch"
    registered: bool = False
    """Registered with ``embedq models add`` (its folder is what the name resolves to)."""
    kind: str = "embedding"
    """``embedding`` (a sentence-transformers model) or ``cross-encoder`` (for reranking)."""


COLUMNS = (
    "id, name, version, sha256, dtype, artifact_path, dimension, max_seq_length, config, backend, "
    "registered_at IS NOT NULL, kind"
)


def resolve_model(*, conn: psycopg.Connection, name: str) -> ModelRow | None:
    """The row ``name`` resolves to, for the client and the worker alike.

    The version last registered under ``name`` with ``embedq models add``;
    else (a bundled model) the newest row recorded for it; ``None`` when the
    name was never registered nor used.
    """
    row = conn.execute(
        f"SELECT {COLUMNS} FROM models WHERE name = %s "
        "ORDER BY registered_at DESC NULLS LAST, created_at DESC, id DESC LIMIT 1",
        (name,),
    ).fetchone()
    return ModelRow(*row) if row else None


def model_names(*, conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT DISTINCT name FROM models ORDER BY name").fetchall()]


def get_ranges(*, conn: psycopg.Connection, model_id: int, dimension: int, normalized: bool) -> np.ndarray | None:
    """``[2, dimension]`` int8 ranges (minimums, maximums), if calibrated."""
    row = conn.execute(
        "SELECT minimums, maximums FROM quantization_ranges WHERE model_id = %s AND dimension = %s AND normalized = %s",
        (model_id, dimension, normalized),
    ).fetchone()
    if row is None:
        return None
    return np.array([row[0], row[1]], dtype=np.float32)
