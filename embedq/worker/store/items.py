"""Per-item JSON outputs of a job (``item_results``): a classify job's predictions, a triage job's records."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def write_items(*, conn: psycopg.Connection, job_id: str, outputs: list[Any], offset: int = 0) -> None:
    """One row per output, item numbers from ``offset``; a second write (a duplicate delivery) changes nothing."""
    conn.execute(
        "INSERT INTO item_results (job_id, item, output) SELECT %s, %s + o.n - 1, o.output "
        "FROM unnest(%s::jsonb[]) WITH ORDINALITY AS o(output, n) ON CONFLICT DO NOTHING",
        (job_id, offset, [Jsonb(output) for output in outputs]),
    )
