"""Writing model versions and their int8 calibration ranges (read by ``api_client.store.models``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from api_client.store.models import COLUMNS, ModelRow, get_ranges


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
    backend: str = "torch",
    kind: str = "embedding",
    register: bool = False,
) -> ModelRow:
    """The row for (name, sha256, dtype, backend), created on first use.

    The embedding cache is keyed by this row's id, so vectors computed in
    another dtype (float16 on a GPU) or by another backend (ONNX, int8) never
    stand in for torch float32 ones. With
    ``register`` (``embedq models add``) the row's ``registered_at`` becomes
    now, which makes its folder the one the name resolves to.
    """
    row = conn.execute(
        f"INSERT INTO models (name, version, kind, sha256, dtype, backend, artifact_path, dimension, max_seq_length, "
        f"config, registered_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) "
        f"ON CONFLICT (name, sha256, dtype, backend) DO UPDATE SET artifact_path = EXCLUDED.artifact_path, "
        f"config = models.config || EXCLUDED.config, "
        f"registered_at = coalesce(EXCLUDED.registered_at, models.registered_at) RETURNING {COLUMNS}",
        (
            name,
            sha256[:12],
            kind,
            sha256,
            dtype,
            backend,
            artifact_path,
            dimension,
            max_seq_length,
            Jsonb(config),
            register,
        ),
    ).fetchone()
    assert row is not None
    return ModelRow(*row)


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


def set_lineage(
    *, conn: psycopg.Connection, model_id: int, parent_id: int, metrics: dict[str, Any], config: dict[str, Any]
) -> None:
    """Record where a trained model version comes from: its parent version, its evaluation, how it was trained."""
    conn.execute(
        "UPDATE models SET parent_id = %s, metrics = metrics || %s, config = config || %s WHERE id = %s",
        (parent_id, Jsonb(metrics), Jsonb(config), model_id),
    )
