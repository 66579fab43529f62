"""The worker's state changes of ``jobs`` and the sweeper's queries.

Every change to a claimed job is fenced by the attempt number that
``claim_job`` returned (``_fenced``), so a worker that lost its lease can never
overwrite the work of the one that took the job over.

A claim, a lease renewal and a progress report commit without waiting for
their WAL flush (``_RELAXED``). A crash of PostgreSQL can lose one of them,
and that is harmless: the job is back as it was before (queued, or running
under a lease that expires), the worker's connection is gone with the crash,
and the sweeper re-sends the job. A job's outputs and final state always
commit synchronously, and since the WAL is flushed in order, flushing them
flushes the claim before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from api_client.errors import AttemptsExhausted, EmbedQError, WrongKind
from api_client.states import JobKind, JobStatus
from api_client.store.jobs import NOTICE_JSON, RESULT_CHANNEL
from embedq.worker.store.embeddings import Float4Array

_RELAXED = "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
"""Joined into a one-statement transaction: its commit does not wait for the WAL flush (see the module docstring)."""


def _relaxed(conn: psycopg.Connection) -> str:
    """``FROM _RELAXED`` for a statement that is its own transaction; nothing inside a caller's transaction,
    whose commit (outputs and final state, perhaps) must stay synchronous."""
    alone = conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return f"FROM {_RELAXED}" if alone else ""


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a running job; ``attempt`` fences every later write."""

    job_id: str
    attempt: int
    kind: JobKind
    request: dict[str, Any]
    parent_id: str | None = None
    item_offset: int = 0
    """Where this chunk's items start in its parent's output (0 for a whole job)."""

    @property
    def output_id(self) -> str:
        """The job whose output rows this job writes: its parent's for a chunk."""
        return self.parent_id or self.job_id


def create_failed_job(
    *, conn: psycopg.Connection, job_id: str, kind: JobKind, queue: str, request: Any, error: EmbedQError
) -> None:
    """Record a message the worker refused (bad inline request), so its sender can read why."""
    conn.execute(
        "INSERT INTO jobs (id, kind, status, queue, request, request_sha256, max_attempts, error, "
        "started_at, finished_at) VALUES (%s, %s, 'failed', %s, %s, '', 1, %s, now(), now()) "
        "ON CONFLICT DO NOTHING",
        (job_id, str(kind), queue, Jsonb({"invalid": request}), Jsonb(error.to_record())),
    )


def claim_job(
    *, conn: psycopg.Connection, job_id: str, kind: JobKind, worker: str, lease_seconds: float
) -> Claim | None:
    """Take a job of ``kind`` that is ``queued``, or ``running`` with an expired lease.

    Returns ``None`` when another worker holds it, it is finished, it is a
    parent whose chunks have not all succeeded (they run instead), or it ran out of attempts (it is then
    failed here, with the last error kept). A job of another kind raises
    ``WrongKind`` and is left as it is, for a message of its own kind.
    """
    row = conn.execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = %s, "
        "lease_expires_at = now() + make_interval(secs => %s), started_at = coalesce(started_at, now()), "
        f"updated_at = now() {_relaxed(conn)} "
        "WHERE id = %s AND kind = %s AND chunks_done >= chunks AND attempts < max_attempts "
        "AND (status = 'queued' OR (status = 'running' AND lease_expires_at < now())) "
        "RETURNING attempts, request, parent_id, item_offset",
        (worker, lease_seconds, job_id, str(kind)),
    ).fetchone()
    if row is not None:
        return Claim(job_id, row[0], kind, row[1], str(row[2]) if row[2] else None, row[3])
    actual = conn.execute("SELECT kind FROM jobs WHERE id = %s", (job_id,)).fetchone()
    if actual is not None and actual[0] != str(kind):
        raise WrongKind(
            f"job {job_id} is of kind {actual[0]}; a message for the {kind} task cannot run it",
            detail={"job_id": job_id, "kind": actual[0], "task_kind": str(kind)},
        )
    fail_exhausted(conn=conn, job_ids=[job_id])
    return None


def pin_model(*, conn: psycopg.Connection, job_id: str, model_id: int) -> int:
    """Pin model version ``model_id`` on job ``job_id`` unless one is pinned already; the pinned one."""
    row = conn.execute(
        "UPDATE jobs SET model_id = coalesce(model_id, %s) WHERE id = %s RETURNING model_id", (model_id, job_id)
    ).fetchone()
    return int(row[0]) if row else model_id


def _fenced(
    conn: psycopg.Connection, claim: Claim, assignments: str, params: tuple[Any, ...], *, relaxed: bool = False
) -> JobStatus | None:
    """``UPDATE jobs SET <assignments>`` if the job is still running under this claim; its new status, if so.

    ``relaxed``: the change may be lost in a crash of PostgreSQL (see the module docstring).
    """
    row = conn.execute(
        f"UPDATE jobs SET {assignments}, updated_at = now() {_relaxed(conn) if relaxed else ''} "
        "WHERE id = %s AND status = 'running' AND attempts = %s RETURNING status",
        (*params, claim.job_id, claim.attempt),
    ).fetchone()
    return JobStatus(row[0]) if row is not None else None


def status_of(*, conn: psycopg.Connection, job_id: str) -> JobStatus:
    row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return JobStatus(row[0]) if row else JobStatus.CANCELLED


def record_progress(
    *, conn: psycopg.Connection, claim: Claim, done: int, total: int, lease_seconds: float
) -> JobStatus | None:
    """Record progress and extend the lease; ``None`` while the job is still ours, else its status."""
    held = _fenced(
        conn,
        claim,
        "progress_done = %s, progress_total = %s, lease_expires_at = now() + make_interval(secs => %s)",
        (done, total, lease_seconds),
        relaxed=True,
    )
    return None if held is not None else status_of(conn=conn, job_id=claim.job_id)


def extend_lease(*, conn: psycopg.Connection, claim: Claim, lease_seconds: float) -> bool:
    """Push the lease forward; ``False`` when the job is no longer held under this claim."""
    assignment = "lease_expires_at = now() + make_interval(secs => %s)"
    return _fenced(conn, claim, assignment, (lease_seconds,), relaxed=True) is not None


_FINISH = f"""
WITH done AS (
    UPDATE jobs SET status = 'succeeded', result = %(result)s, error = NULL,
           progress_done = coalesce(%(total)s, progress_total), progress_total = coalesce(%(total)s, progress_total),
           finished_at = now(), lease_expires_at = NULL, updated_at = now()
     WHERE id = %(job_id)s AND status = 'running' AND attempts = %(attempt)s
    RETURNING *
)
SELECT (SELECT pg_notify('{RESULT_CHANNEL}', notice)
          FROM (SELECT done.id::text || ' ' || json_build_object(
                    'info', {NOTICE_JSON.format(t="done")}, 'dim', %(dim)s, 'vectors', %(vectors)s::text
                )::text AS notice) AS n
         WHERE done.parent_id IS NULL AND octet_length(notice) < 8000)
  FROM done
"""


def finish_job(
    *,
    conn: psycopg.Connection,
    claim: Claim,
    result: dict[str, Any],
    total: int | None = None,
    notice: tuple[int, str] | None = None,
) -> bool:
    """Mark the job succeeded under its claim (in the transaction that wrote its outputs); whether it was ours.

    ``total`` (items) becomes its progress, else its progress total is kept.
    A whole job (not a chunk) is announced on ``RESULT_CHANNEL`` with its row
    and ``notice`` (dimension and base64 of its raw float32 vectors, for a
    small encode job) when the payload fits a notification (under 8000
    bytes), so that a waiting client need not read the job back.
    """
    dim, vectors = notice if notice is not None else (0, None)
    row = conn.execute(
        _FINISH,
        {
            "result": Jsonb(result),
            "total": total,
            "job_id": claim.job_id,
            "attempt": claim.attempt,
            "dim": dim,
            "vectors": vectors,
        },
    ).fetchone()
    return row is not None


_WRITE_OUTPUTS = """
WITH new AS (
    INSERT INTO embeddings (model_id, text_sha256, embedding)
    SELECT %(model_id)s, k.key, (%(values)s::real[])[(k.n - 1) * %(dim)s + 1 : k.n * %(dim)s]::vector
      FROM unnest(%(new_keys)s::bytea[]) WITH ORDINALITY AS k(key, n)
     ORDER BY k.key
    ON CONFLICT DO NOTHING
)
INSERT INTO encode_outputs (job_id, item, model_id, text_sha256)
SELECT %(output_id)s, %(offset)s + k.n - 1, %(model_id)s, k.key
  FROM unnest(%(keys)s::bytea[]) WITH ORDINALITY AS k(key, n)
ON CONFLICT DO NOTHING
"""


def chunk_summaries_to_merge(*, conn: psycopg.Connection, parent_id: str) -> list[dict[str, Any]] | None:
    """The chunks' summaries in chunk order, once the trigger has marked their parent succeeded without one."""
    row = conn.execute("SELECT status, result FROM jobs WHERE id = %s", (parent_id,)).fetchone()
    if row is None or row[0] != JobStatus.SUCCEEDED or row[1] is not None:
        return None
    rows = conn.execute("SELECT result FROM jobs WHERE parent_id = %s ORDER BY chunk_index", (parent_id,)).fetchall()
    return [result for (result,) in rows]


def set_parent_summary(*, conn: psycopg.Connection, parent_id: str, result: dict[str, Any]) -> None:
    conn.execute("UPDATE jobs SET result = %s WHERE id = %s", (Jsonb(result), parent_id))


def write_encode_outputs(
    *,
    conn: psycopg.Connection,
    claim: Claim,
    model_id: int,
    keys: Sequence[bytes],
    new_keys: Sequence[bytes],
    new_vectors: np.ndarray,
) -> None:
    """An encode job's outputs in one statement: its new vectors into the cache, its items into ``encode_outputs``.

    The ``new_keys`` vectors go into the cache (a key another worker stored
    first is skipped), the items ``keys`` into ``encode_outputs`` at the
    claim's ``item_offset`` (under its parent's id for a chunk).
    """
    conn.execute(
        _WRITE_OUTPUTS,
        {
            "model_id": model_id,
            "values": Float4Array(new_vectors),
            "dim": int(new_vectors.shape[1]) if new_vectors.ndim == 2 else 0,
            "new_keys": list(new_keys),
            "output_id": claim.output_id,
            "offset": claim.item_offset,
            "keys": list(keys),
        },
    )


def fail_job(*, conn: psycopg.Connection, claim: Claim, error: EmbedQError) -> bool:
    """Mark the job failed with ``error``."""
    status = _fenced(
        conn,
        claim,
        "status = 'failed', error = %s, finished_at = now(), lease_expires_at = NULL",
        (Jsonb(error.to_record()),),
    )
    return status is not None


def release_job(*, conn: psycopg.Connection, claim: Claim, error: EmbedQError) -> bool:
    """Put the job back to ``queued`` after a retriable error, keeping the error; fail it when out of attempts.

    Returns whether it was queued again (and so should be retried).
    """
    status = _fenced(
        conn,
        claim,
        "status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, "
        "error = CASE WHEN attempts < max_attempts THEN %s ELSE %s END, "
        "finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END, "
        "lease_expires_at = NULL, sent_at = now(), sends = sends + 1",
        (Jsonb(error.to_record()), Jsonb(_exhausted(error.to_record(), claim.attempt).to_record())),
    )
    return status == JobStatus.QUEUED


def _exhausted(last_error: dict[str, Any] | None, attempts: int) -> AttemptsExhausted:
    last = f": last error: {last_error['type']}: {last_error['message']}" if last_error else ""
    return AttemptsExhausted(
        f"the job failed or was lost on every one of its {attempts} attempt{'s' if attempts != 1 else ''}{last}",
        detail={"last_error": last_error, "attempts": attempts},
    )


_UNCLAIMABLE = (
    "attempts >= max_attempts AND chunks_done >= chunks "
    "AND (status = 'queued' OR (status = 'running' AND lease_expires_at < now()))"
)


def fail_exhausted(*, conn: psycopg.Connection, job_ids: list[str] | None = None) -> list[str]:
    """Fail jobs that can never be claimed again: out of attempts and not held by a live lease."""
    rows = conn.execute(
        f"SELECT id, error, attempts FROM jobs WHERE {_UNCLAIMABLE} "
        "AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))",
        {"ids": job_ids},
    ).fetchall()
    failed = []
    lost = {"type": "WorkerLost", "message": "the process running the job died or stopped renewing its lease"}
    for job_id, last_error, attempts in rows:
        row = conn.execute(
            "UPDATE jobs SET status = 'failed', error = %s, finished_at = now(), updated_at = now(), "
            f"lease_expires_at = NULL WHERE id = %s AND {_UNCLAIMABLE} RETURNING id",
            (Jsonb(_exhausted(last_error or lost, attempts).to_record()), job_id),
        ).fetchone()
        if row is not None:
            failed.append(str(job_id))
    return failed


_DUE = "sent_at < now() - make_interval(secs => %(after)s * power(2, least(sends - 1, 6)))"


@dataclass(frozen=True)
class Resend:
    """A job the sweeper sends again, to its own kind's task."""

    job_id: str
    kind: JobKind
    queue: str


def lapsed_jobs(*, conn: psycopg.Connection, resend_after: float, limit: int = 500) -> list[Resend]:
    """Running jobs whose lease expired: their worker is gone.

    Each is due at once the first time, then after ``resend_after`` seconds,
    doubling per re-send (up to 64 times), so a job no worker can take does
    not flood its queue.
    """
    rows = conn.execute(
        f"SELECT id, kind, queue FROM jobs WHERE status = 'running' AND lease_expires_at < now() "
        f"AND attempts < max_attempts AND (sends = 1 OR {_DUE}) ORDER BY lease_expires_at LIMIT %(limit)s",
        {"after": resend_after, "limit": limit},
    ).fetchall()
    return [Resend(str(job_id), JobKind(kind), queue) for job_id, kind, queue in rows]


def stale_queues(*, conn: psycopg.Connection, resend_after: float) -> dict[str, tuple[int, int]]:
    """``queue → (queued jobs, of which due for a re-send)`` for queues with at least one due."""
    rows = conn.execute(
        f"SELECT queue, count(*), count(*) FILTER (WHERE {_DUE}) FROM jobs WHERE status = 'queued' "
        "AND chunks_done >= chunks "
        f"GROUP BY queue HAVING count(*) FILTER (WHERE {_DUE}) > 0",
        {"after": resend_after},
    ).fetchall()
    return {queue: (total, due) for queue, total, due in rows}


def stale_queued_jobs(*, conn: psycopg.Connection, resend_after: float, queue: str, limit: int) -> list[Resend]:
    """Queued jobs in ``queue`` due for a re-send, oldest first."""
    rows = conn.execute(
        f"SELECT id, kind FROM jobs WHERE status = 'queued' AND chunks_done >= chunks AND queue = %(queue)s "
        f"AND {_DUE} "
        "ORDER BY created_at LIMIT %(limit)s",
        {"after": resend_after, "queue": queue, "limit": limit},
    ).fetchall()
    return [Resend(str(job_id), JobKind(kind), queue) for job_id, kind in rows]


def mark_sent(*, conn: psycopg.Connection, job_id: str, queue: str) -> None:
    """Record a re-send (to ``queue``, which may differ from the job's old one)."""
    conn.execute("UPDATE jobs SET sent_at = now(), sends = sends + 1, queue = %s WHERE id = %s", (queue, job_id))
