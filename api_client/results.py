"""Reading a finished job's output, one reader per job kind (named in ``api_client.kinds``).

Results never travel through the broker: each reader takes the job's summary
from its row and its data from PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from api_client.postprocess import quantize, truncate_and_normalize
from api_client.schemas import JobInfo
from api_client.store import arrays as arrays_store
from api_client.store import embeddings as embeddings_store
from api_client.store import models as models_store


def read_vectors(conn: psycopg.Connection, info: JobInfo) -> np.ndarray:
    """An encode job's vectors in input order, with its options applied (truncate, normalize, quantize)."""
    raw = embeddings_store.read_job_vectors(conn=conn, job_id=info.id, count=(info.result or {})["count"])
    return with_options(conn, info, raw)


def with_options(conn: psycopg.Connection | None, info: JobInfo, raw: np.ndarray) -> np.ndarray:
    """An encode job's raw vectors with its options applied; ``conn`` reads int8 and uint8 ranges only."""
    summary: dict[str, Any] = info.result or {}
    ranges = None
    if summary["precision"] in ("int8", "uint8"):
        assert conn is not None, "int8 and uint8 read their ranges from the database"
        ranges = models_store.get_ranges(
            conn=conn, model_id=summary["model_id"], dimension=summary["dimension"], normalized=summary["normalize"]
        )
    vectors = truncate_and_normalize(raw, truncate_dim=summary["truncate_dim"], normalize=summary["normalize"])
    return quantize(vectors, summary["precision"], ranges)


def read_scores(conn: psycopg.Connection, info: JobInfo) -> np.ndarray:
    """A similarity job's float32 scores: ``[queries, texts]``, or ``[n]`` when pairwise."""
    return arrays_store.read_arrays(conn=conn, job_id=info.id)["scores"]


def read_pairs(conn: psycopg.Connection, info: JobInfo) -> list[tuple[float, int, int]]:
    """A paraphrase job's pairs ``(score, i, j)``, best first."""
    arrays = arrays_store.read_arrays(conn=conn, job_id=info.id)
    scores, pairs = arrays["scores"], arrays["pairs"]
    return [(float(score), int(i), int(j)) for score, (i, j) in zip(scores, pairs, strict=True)]


def read_summary(_conn: psycopg.Connection, info: JobInfo) -> dict[str, Any]:
    """A job whose output is its summary (upsert, delete, index build, reindex)."""
    return dict(info.result or {})


def read_hits(conn: psycopg.Connection, info: JobInfo) -> list[list[dict[str, Any]]]:
    """A search job's hits: one list per query, best first, each ``{"id", "score", "text"?, "metadata"?}``."""
    rows = conn.execute("SELECT hits FROM search_results WHERE job_id = %s ORDER BY item", (info.id,)).fetchall()
    return [row[0] for row in rows]


def _prediction(output: dict[str, Any]) -> dict[str, Any]:
    return {**output, "top": [(label, score) for label, score in output["top"]]}


def _items(conn: psycopg.Connection, info: JobInfo) -> list[dict[str, Any]]:
    """A job's ``item_results`` outputs, in item order."""
    rows = conn.execute("SELECT output FROM item_results WHERE job_id = %s ORDER BY item", (info.id,)).fetchall()
    return [row[0] for row in rows]


def read_predictions(conn: psycopg.Connection, info: JobInfo) -> list[dict[str, Any]]:
    """A classify job's predictions, one per text: ``{"label", "score", "top": [(label, score)], "abstained"}``."""
    return [_prediction(output) for output in _items(conn, info)]


def read_triage(conn: psycopg.Connection, info: JobInfo) -> list[dict[str, Any]]:
    """A triage job's records, one per text: ``{"category", "similar", "duplicates"}``."""
    return [{**output, "category": _prediction(output["category"])} for output in _items(conn, info)]
