"""The ``jobs`` table: every state change of a job is one statement here.

Functions are keyword-only and take an explicit autocommit connection; a
caller that needs several statements in one transaction wraps them in
``with conn.transaction()``. Worker-side changes are fenced by the attempt
number that ``claim_job`` returned, so a worker that lost its lease can never
overwrite the work of the one that took the job over.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api_client.errors import AttemptsExhausted, EmbedQError, IdempotencyConflict, JobNotFound
from api_client.schemas import JobInfo
from api_client.states import JobKind, JobStatus

COLUMNS = (
    "id, kind, status, queue, progress_done, progress_total, attempts, result, error, worker, "
    "idempotency_key, created_at, started_at, finished_at"
)


def _info(row: tuple[Any, ...]) -> JobInfo:
    return JobInfo(
        id=str(row[0]),
        kind=JobKind(row[1]),
        status=JobStatus(row[2]),
        queue=row[3],
        progress=(row[4], row[5]),
        attempts=row[6],
        result=row[7],
        error=row[8],
        worker=row[9],
        idempotency_key=row[10],
        created_at=row[11],
        started_at=row[12],
        finished_at=row[13],
    )


def request_digest(request: dict[str, Any]) -> str:
    """sha256 of the request's canonical JSON: two submits are the same job when it matches."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def create_job(
    *,
    conn: psycopg.Connection,
    kind: JobKind,
    queue: str,
    request: dict[str, Any],
    total: int,
    max_attempts: int,
    idempotency_key: str | None = None,
    job_id: str | None = None,
) -> tuple[JobInfo, bool]:
    """Insert a ``queued`` job; return it and whether it is new.

    With an ``idempotency_key`` (or a fixed ``job_id``) already in use, the
    existing job is returned, or ``IdempotencyConflict`` raised when its
    request differs.
    """
    job_id = job_id or str(uuid.uuid4())
    digest = request_digest(request)
    row = conn.execute(
        f"INSERT INTO jobs (id, kind, status, queue, request, request_sha256, progress_total, max_attempts, "
        f"idempotency_key, sent_at) VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s, %s, now()) "
        f"ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
        (job_id, str(kind), queue, Jsonb(request), digest, total, max_attempts, idempotency_key),
    ).fetchone()
    if row is not None:
        return _info(row), True
    existing = conn.execute(
        f"SELECT request_sha256, {COLUMNS} FROM jobs WHERE id = %s OR idempotency_key = %s",
        (job_id, idempotency_key),
    ).fetchone()
    if existing is None:  # the conflicting row was deleted in between
        return create_job(
            conn=conn,
            kind=kind,
            queue=queue,
            request=request,
            total=total,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            job_id=job_id,
        )
    if existing[0] != digest:
        raise IdempotencyConflict(
            f"idempotency key {idempotency_key!r} was used for a different request (job {existing[1]})",
            detail={"idempotency_key": idempotency_key, "job_id": str(existing[1])},
        )
    return _info(existing[1:]), False


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


def get_job(*, conn: psycopg.Connection, job_id: str) -> JobInfo:
    """The job's current row; ``JobNotFound`` when there is none."""
    try:
        uuid.UUID(str(job_id))
    except ValueError as exc:
        raise JobNotFound(f"no job {job_id!r}: job ids are UUIDs", detail={"job_id": str(job_id)}) from exc
    row = conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s", (str(job_id),)).fetchone()
    if row is None:
        raise JobNotFound(f"no job {job_id}", detail={"job_id": str(job_id)})
    return _info(row)


def list_jobs(*, conn: psycopg.Connection, status: JobStatus | None = None, limit: int = 20) -> list[JobInfo]:
    """The newest jobs first, optionally of one status."""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE %(status)s::text IS NULL OR status = %(status)s "
        "ORDER BY created_at DESC LIMIT %(limit)s",
        {"status": str(status) if status else None, "limit": limit},
    ).fetchall()
    return [_info(row) for row in rows]


def cancel_job(*, conn: psycopg.Connection, job_id: str) -> JobInfo:
    """Cancel a queued or running job; a finished job is returned unchanged."""
    row = conn.execute(
        f"UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), lease_expires_at = NULL "
        f"WHERE id = %s AND status IN ('queued', 'running') RETURNING {COLUMNS}",
        (job_id,),
    ).fetchone()
    return _info(row) if row is not None else get_job(conn=conn, job_id=job_id)


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a running job; ``attempt`` fences every later write."""

    job_id: str
    attempt: int
    kind: JobKind
    request: dict[str, Any]


def claim_job(*, conn: psycopg.Connection, job_id: str, worker: str, lease_seconds: float) -> Claim | None:
    """Take a job that is ``queued``, or ``running`` with an expired lease.

    Returns ``None`` when another worker holds it, it is finished, or it ran
    out of attempts (it is then failed here, with the last error kept).
    """
    row = conn.execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = %s, "
        "lease_expires_at = now() + make_interval(secs => %s), started_at = coalesce(started_at, now()), "
        "updated_at = now() "
        "WHERE id = %s AND attempts < max_attempts "
        "AND (status = 'queued' OR (status = 'running' AND lease_expires_at < now())) "
        "RETURNING attempts, kind, request",
        (worker, lease_seconds, job_id),
    ).fetchone()
    if row is None:
        fail_exhausted(conn=conn, job_ids=[job_id])
        return None
    return Claim(job_id=job_id, attempt=row[0], kind=JobKind(row[1]), request=row[2])


def heartbeat(
    *, conn: psycopg.Connection, claim: Claim, done: int, total: int, lease_seconds: float
) -> JobStatus | None:
    """Record progress and extend the lease; ``None`` while the job is still ours, else its status."""
    row = conn.execute(
        "UPDATE jobs SET progress_done = %s, progress_total = %s, updated_at = now(), "
        "lease_expires_at = now() + make_interval(secs => %s) "
        "WHERE id = %s AND status = 'running' AND attempts = %s RETURNING 1",
        (done, total, lease_seconds, claim.job_id, claim.attempt),
    ).fetchone()
    if row is not None:
        return None
    status = conn.execute("SELECT status FROM jobs WHERE id = %s", (claim.job_id,)).fetchone()
    return JobStatus(status[0]) if status else JobStatus.CANCELLED


def extend_lease(*, conn: psycopg.Connection, claim: Claim, lease_seconds: float) -> bool:
    """Push the lease forward; ``False`` when the job is no longer held under this claim."""
    row = conn.execute(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => %s) "
        "WHERE id = %s AND status = 'running' AND attempts = %s RETURNING 1",
        (lease_seconds, claim.job_id, claim.attempt),
    ).fetchone()
    return row is not None


def finish_job(*, conn: psycopg.Connection, claim: Claim, result: dict[str, Any], total: int) -> bool:
    """Mark the job succeeded (call inside the transaction that wrote its outputs)."""
    row = conn.execute(
        "UPDATE jobs SET status = 'succeeded', result = %s, error = NULL, progress_done = %s, progress_total = %s, "
        "finished_at = now(), updated_at = now(), lease_expires_at = NULL "
        "WHERE id = %s AND status = 'running' AND attempts = %s RETURNING 1",
        (Jsonb(result), total, total, claim.job_id, claim.attempt),
    ).fetchone()
    return row is not None


def fail_job(*, conn: psycopg.Connection, claim: Claim, error: EmbedQError) -> bool:
    """Mark the job failed with ``error``."""
    row = conn.execute(
        "UPDATE jobs SET status = 'failed', error = %s, finished_at = now(), updated_at = now(), "
        "lease_expires_at = NULL WHERE id = %s AND status = 'running' AND attempts = %s RETURNING 1",
        (Jsonb(error.to_record()), claim.job_id, claim.attempt),
    ).fetchone()
    return row is not None


def release_job(*, conn: psycopg.Connection, claim: Claim, error: EmbedQError) -> bool:
    """Put the job back to ``queued`` after a retriable error, keeping the error; fail it when out of attempts."""
    row = conn.execute(
        "UPDATE jobs SET status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, "
        "error = CASE WHEN attempts < max_attempts THEN %s ELSE %s END, "
        "finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END, "
        "lease_expires_at = NULL, updated_at = now(), sent_at = now(), sends = sends + 1 "
        "WHERE id = %s AND status = 'running' AND attempts = %s RETURNING status",
        (
            Jsonb(error.to_record()),
            Jsonb(_exhausted(error.to_record()).to_record()),
            claim.job_id,
            claim.attempt,
        ),
    ).fetchone()
    return row is not None and row[0] == "queued"


def _exhausted(last_error: dict[str, Any] | None) -> AttemptsExhausted:
    last = f": last error: {last_error['type']}: {last_error['message']}" if last_error else ""
    return AttemptsExhausted(f"the job failed or was lost on every attempt{last}", detail={"last_error": last_error})


def fail_exhausted(*, conn: psycopg.Connection, job_ids: list[str] | None = None) -> list[str]:
    """Fail jobs that can never be claimed again: out of attempts and not held by a live lease."""
    rows = conn.execute(
        "SELECT id, error FROM jobs WHERE attempts >= max_attempts "
        "AND (status = 'queued' OR (status = 'running' AND lease_expires_at < now())) "
        "AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))",
        {"ids": job_ids},
    ).fetchall()
    failed = []
    lost = {"type": "WorkerLost", "message": "the worker running the job stopped heartbeating"}
    for job_id, last_error in rows:
        row = conn.execute(
            "UPDATE jobs SET status = 'failed', error = %s, finished_at = now(), updated_at = now(), "
            "lease_expires_at = NULL WHERE id = %s AND attempts >= max_attempts "
            "AND (status = 'queued' OR (status = 'running' AND lease_expires_at < now())) RETURNING id",
            (Jsonb(_exhausted(last_error or lost).to_record()), job_id),
        ).fetchone()
        if row is not None:
            failed.append(str(job_id))
    return failed


_DUE = "sent_at < now() - make_interval(secs => %(after)s * power(2, least(sends - 1, 6)))"


def lapsed_jobs(*, conn: psycopg.Connection, resend_after: float, limit: int = 500) -> list[tuple[str, str]]:
    """``(id, queue)`` of running jobs whose lease expired: their worker is gone.

    Each is due at once the first time, then after ``resend_after`` seconds,
    doubling per re-send (up to 64 times), so a job no worker can take does
    not flood its queue.
    """
    rows = conn.execute(
        f"SELECT id, queue FROM jobs WHERE status = 'running' AND lease_expires_at < now() "
        f"AND attempts < max_attempts AND (sends = 1 OR {_DUE}) ORDER BY lease_expires_at LIMIT %(limit)s",
        {"after": resend_after, "limit": limit},
    ).fetchall()
    return [(str(job_id), queue) for job_id, queue in rows]


def stale_queues(*, conn: psycopg.Connection, resend_after: float) -> dict[str, tuple[int, int]]:
    """``queue → (queued jobs, of which due for a re-send)`` for queues with at least one due."""
    rows = conn.execute(
        f"SELECT queue, count(*), count(*) FILTER (WHERE {_DUE}) FROM jobs WHERE status = 'queued' "
        f"GROUP BY queue HAVING count(*) FILTER (WHERE {_DUE}) > 0",
        {"after": resend_after},
    ).fetchall()
    return {queue: (total, due) for queue, total, due in rows}


def stale_queued_jobs(*, conn: psycopg.Connection, resend_after: float, queue: str, limit: int) -> list[str]:
    """Ids of queued jobs in ``queue`` due for a re-send, oldest first."""
    rows = conn.execute(
        f"SELECT id FROM jobs WHERE status = 'queued' AND queue = %(queue)s AND {_DUE} "
        "ORDER BY created_at LIMIT %(limit)s",
        {"after": resend_after, "queue": queue, "limit": limit},
    ).fetchall()
    return [str(row[0]) for row in rows]


def mark_sent(*, conn: psycopg.Connection, job_id: str, queue: str) -> None:
    """Record a re-send (to ``queue``, which may differ from the job's old one)."""
    conn.execute("UPDATE jobs SET sent_at = now(), sends = sends + 1, queue = %s WHERE id = %s", (queue, job_id))
