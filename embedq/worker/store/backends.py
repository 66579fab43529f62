"""Backend builds and quality gates in the database: the build lock, gate records, a row's backend.

A gate record lives in its model version's row (``models``: one row per
name, sha256, dtype and backend) as ``metrics.gate``. The build of one
backend's files for one model version takes a session advisory lock, so two
workers never build the same files at once. ``model_serving`` records the
backend each version serves to ``auto``, changed only by ``promote``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api_client.store.models import ModelRow
from embedq.worker.store.models import upsert_model

BUILD_LOCK = 0x656D6267  # "embg": advisory lock class of backend builds


def _key(sha256: str, backend: str) -> str:
    return f"{sha256}:{backend}"


def lock(conn: psycopg.Connection, *, sha256: str, backend: str) -> None:
    """Take the build lock, waiting for the session that holds it."""
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (BUILD_LOCK, _key(sha256, backend)))


def unlock(conn: psycopg.Connection, *, sha256: str, backend: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (BUILD_LOCK, _key(sha256, backend)))


@contextmanager
def gate_lock(conn: psycopg.Connection, *, sha256: str) -> Iterator[None]:
    """Hold the gate lock of a model version: one gate-and-promote at a time, fleet-wide."""
    lock(conn, sha256=sha256, backend="gate")
    try:
        yield
    finally:
        unlock(conn, sha256=sha256, backend="gate")


def gates(*, conn: psycopg.Connection, name: str, sha256: str, dtype: str) -> dict[str, dict[str, Any]]:
    """``{backend: gate record}`` of every backend gated for this model version."""
    rows = conn.execute(
        "SELECT backend, metrics->'gate' FROM models "
        "WHERE name = %s AND sha256 = %s AND dtype = %s AND metrics ? 'gate'",
        (name, sha256, dtype),
    ).fetchall()
    return {backend: gate for backend, gate in rows}


def record_gate(
    *,
    conn: psycopg.Connection,
    name: str,
    sha256: str,
    dtype: str,
    backend: str,
    artifact_path: str,
    dimension: int | None,
    max_seq_length: int | None,
    config: dict[str, Any],
    gate: dict[str, Any],
) -> ModelRow:
    """The row of (name, sha256, dtype, backend), created if needed, with ``gate`` as its ``metrics.gate``."""
    with conn.transaction():
        row = upsert_model(
            conn=conn,
            name=name,
            sha256=sha256,
            dtype=dtype,
            backend=backend,
            artifact_path=artifact_path,
            dimension=dimension,
            max_seq_length=max_seq_length,
            config=config,
        )
        conn.execute(
            "UPDATE models SET metrics = metrics || jsonb_build_object('gate', %s::jsonb) WHERE id = %s",
            (Jsonb(gate), row.id),
        )
    return row


def row_backend(*, conn: psycopg.Connection, model_id: int) -> str | None:
    """The backend of model version ``model_id`` (``None`` when there is no such row)."""
    row = conn.execute("SELECT backend FROM models WHERE id = %s", (model_id,)).fetchone()
    return row[0] if row else None


def all_gates(*, conn: psycopg.Connection) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """``(name, version, backend, gate record or None)`` of every embedding model version."""
    rows = conn.execute(
        "SELECT name, version, backend, metrics->'gate' FROM models WHERE kind = 'embedding' "
        "ORDER BY name, version, backend"
    ).fetchall()
    return [(name, version, backend, gate) for name, version, backend, gate in rows]


def serving(*, conn: psycopg.Connection, name: str, sha256: str, dtype: str) -> str | None:
    """The backend promoted for this model version (a row backend, or ``torch``), ``None`` when none was."""
    row = conn.execute(
        "SELECT backend FROM model_serving WHERE name = %s AND sha256 = %s AND dtype = %s", (name, sha256, dtype)
    ).fetchone()
    return row[0] if row else None


def promote(*, conn: psycopg.Connection, name: str, sha256: str, dtype: str, backend: str, by: str) -> None:
    """Make ``backend`` what this model version serves to ``auto``; the one it replaces joins the history."""
    conn.execute(
        "INSERT INTO model_serving AS s (name, sha256, dtype, backend, promoted_by) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (name, sha256, dtype) DO UPDATE SET backend = EXCLUDED.backend, "
        "promoted_by = EXCLUDED.promoted_by, promoted_at = now(), "
        "history = s.history || jsonb_build_array(jsonb_build_object("
        "'backend', s.backend, 'promoted_by', s.promoted_by, 'promoted_at', s.promoted_at)) "
        "WHERE s.backend IS DISTINCT FROM EXCLUDED.backend",
        (name, sha256, dtype, backend, by),
    )


def all_serving(*, conn: psycopg.Connection) -> dict[tuple[str, str, str], tuple[str, str, Any]]:
    """``{(name, sha256, dtype): (backend, promoted_by, promoted_at)}`` of every promoted model version."""
    rows = conn.execute("SELECT name, sha256, dtype, backend, promoted_by, promoted_at FROM model_serving").fetchall()
    return {(name, sha256, dtype): (backend, by, at) for name, sha256, dtype, backend, by, at in rows}
