"""The ``models`` table (model versions) and their int8 calibration ranges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb


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


_COLUMNS = "id, name, version, sha256, dtype, artifact_path, dimension, max_seq_length, config"


def upsert_model(
    *,
    conn: psycopg.Connection,
    name: str,
    sha256: str,
    artifact_path: str,
    dimension: int | None,
    max_seq_length: int | None,
    config: dict[str, Any],
    dtype: str = "float32",
    kind: str = "embedding",
    register: bool = False,
) -> ModelRow:
    """The row for (name, sha256, dtype), created on first use.

    The embedding cache is keyed by this row's id, so vectors computed in
    another dtype (float16 on a GPU) never stand in for float32 ones. With
    ``register`` (``embedq models add``) the row's ``registered_at`` becomes
    now, which makes its folder the one the name resolves to.
    """
    row = conn.execute(
        f"INSERT INTO models (name, version, kind, sha256, dtype, artifact_path, dimension, max_seq_length, config, "
        f"registered_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) "
        f"ON CONFLICT (name, sha256, dtype) DO UPDATE SET artifact_path = EXCLUDED.artifact_path, "
        f"config = models.config || EXCLUDED.config, "
        f"registered_at = coalesce(EXCLUDED.registered_at, models.registered_at) RETURNING {_COLUMNS}",
        (name, sha256[:12], kind, sha256, dtype, artifact_path, dimension, max_seq_length, Jsonb(config), register),
    ).fetchone()
    assert row is not None
    return ModelRow(*row)


def find_model(*, conn: psycopg.Connection, name: str) -> ModelRow | None:
    """The newest version recorded under ``name``, if any."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM models WHERE name = %s ORDER BY created_at DESC, id DESC LIMIT 1", (name,)
    ).fetchone()
    return ModelRow(*row) if row else None


def registered_model(*, conn: psycopg.Connection, name: str) -> ModelRow | None:
    """The version last registered under ``name`` with ``embedq models add``, if any."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM models WHERE name = %s AND registered_at IS NOT NULL "
        "ORDER BY registered_at DESC LIMIT 1",
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


def put_ranges(
    *,
    conn: psycopg.Connection,
    model_id: int,
    dimension: int,
    normalized: bool,
    ranges: np.ndarray,
    calibration: str,
) -> np.ndarray:
    """Store ranges unless another worker stored them first; return the stored ones."""
    conn.execute(
        "INSERT INTO quantization_ranges (model_id, dimension, normalized, minimums, maximums, calibration) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (model_id, dimension, normalized, ranges[0].tolist(), ranges[1].tolist(), calibration),
    )
    stored = get_ranges(conn=conn, model_id=model_id, dimension=dimension, normalized=normalized)
    assert stored is not None
    return stored
