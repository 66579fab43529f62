"""Writing a job's numpy outputs to ``job_arrays`` (read by ``api_client.store.arrays``)."""

from __future__ import annotations

import numpy as np
import psycopg


def write_arrays(*, conn: psycopg.Connection, job_id: str, arrays: dict[str, np.ndarray]) -> None:
    """Store the job's arrays; a second write of the same names (a duplicate delivery) changes nothing."""
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO job_arrays (job_id, name, dtype, shape, data) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [
                (job_id, name, array.dtype.str, list(array.shape), np.ascontiguousarray(array).tobytes())
                for name, array in arrays.items()
            ],
        )
