"""``job_arrays``: a job's numpy outputs (score matrices, pairs), by (job, name).

Stored as raw bytes with their dtype and shape, so a reader needs numpy only;
in SQL, ``shape`` and ``dtype`` say what ``data`` holds.
"""

from __future__ import annotations

import numpy as np
import psycopg


def read_arrays(*, conn: psycopg.Connection, job_id: str) -> dict[str, np.ndarray]:
    """Every array the job stored, by name."""
    rows = conn.execute("SELECT name, dtype, shape, data FROM job_arrays WHERE job_id = %s", (job_id,)).fetchall()
    return {name: np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape) for name, dtype, shape, data in rows}
