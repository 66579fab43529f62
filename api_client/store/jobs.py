"""The client's queries of the ``jobs`` table: create (whole or in chunks), read, list, cancel.

Functions are keyword-only and take an explicit autocommit connection. The
worker's state changes (claim, lease, progress, finish, release) and the
sweeper's queries live in ``embedq.worker.store.jobs``.

A large request becomes a parent row and chunk rows, created in one
transaction: each chunk is an ordinary job of the same kind over a part of
the items, at ``item_offset`` in the parent. A trigger (migrations 0002 and
0003) marks the parent running when a chunk starts, fails or cancels it with
any chunk, cancels its open chunks when it ends, and with its last chunk
either finishes it or, for a parent that ``finalize``s, makes it runnable so
that its own runner does the last step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api_client.errors import IdempotencyConflict, JobNotFound
from api_client.schemas import JobInfo
from api_client.states import JobKind, JobStatus

COLUMNS = (
    "id, kind, status, queue, "
    "CASE WHEN chunks > 0 AND status <> 'succeeded' THEN "
    "(SELECT coalesce(sum(c.progress_done), 0)::int FROM jobs c WHERE c.parent_id = jobs.id) "
    "ELSE progress_done END, "
    "progress_total, "
    "CASE WHEN chunks > 0 THEN (SELECT coalesce(max(c.attempts), 0) FROM jobs c WHERE c.parent_id = jobs.id) "
    "ELSE attempts END, "
    "result, error, worker, idempotency_key, created_at, started_at, finished_at, parent_id, chunks"
)
"""A job as ``JobInfo`` reads it; a parent's progress is the sum of its chunks', its attempts their most."""


def job_info(row: tuple[Any, ...]) -> JobInfo:
    """A ``JobInfo`` from a row of ``COLUMNS``."""
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
        parent_id=str(row[14]) if row[14] else None,
        chunks=row[15],
    )


RESULT_CHANNEL = "embedq_results"
"""``NOTIFY`` channel of finished jobs announced with their row, for clients that wait on them.

The payload is ``<job id> <JSON>``: ``{"info": <NOTICE_JSON>, "dim": d, "vectors": base64 | null}``,
where ``vectors`` holds a small encode job's raw float32 vectors (little-endian, ``[count, d]``).
``NOTIFY_CHANNEL`` (``api_client.states``) keeps carrying the bare id of every finished job.
"""

NOTICE_JSON = (
    "json_build_object('id', {t}.id, 'kind', {t}.kind, 'status', {t}.status, 'queue', {t}.queue, "
    "'progress', json_build_array({t}.progress_done, {t}.progress_total), 'attempts', {t}.attempts, "
    "'result', {t}.result, 'error', {t}.error, 'worker', {t}.worker, 'idempotency_key', {t}.idempotency_key, "
    "'created_at', {t}.created_at, 'started_at', {t}.started_at, 'finished_at', {t}.finished_at, "
    "'parent_id', {t}.parent_id, 'chunks', {t}.chunks)"
)
"""A whole job's row (``{t}``: its table alias) as JSON that ``info_from_json`` reads; not for parents."""


def info_from_json(fields: dict[str, Any]) -> JobInfo:
    """A ``JobInfo`` from ``NOTICE_JSON``."""

    def when(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value is not None else None

    created_at = when(fields["created_at"])
    assert created_at is not None
    return JobInfo(
        id=str(fields["id"]),
        kind=JobKind(fields["kind"]),
        status=JobStatus(fields["status"]),
        queue=fields["queue"],
        progress=(fields["progress"][0], fields["progress"][1]),
        attempts=fields["attempts"],
        result=fields["result"],
        error=fields["error"],
        worker=fields["worker"],
        idempotency_key=fields["idempotency_key"],
        created_at=created_at,
        started_at=when(fields["started_at"]),
        finished_at=when(fields["finished_at"]),
        parent_id=fields["parent_id"],
        chunks=fields["chunks"],
    )


def request_digest(request: dict[str, Any]) -> str:
    """sha256 of the request's canonical JSON: two submits are the same job when it matches."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Created:
    """A submitted job and the messages to send for it once its rows are committed."""

    info: JobInfo
    created: bool
    messages: list[tuple[str, str]]
    """``(job id, queue)`` of each job to send: the job itself, or its queued chunks."""


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
    chunks: list[Chunk] | None = None,
    finalize: bool = False,
) -> Created:
    """Insert a ``queued`` job, with ``chunks`` (several) as its chunk jobs when given.

    A parent with ``finalize`` becomes runnable when its last chunk succeeds
    (its runner then finishes it); any other parent succeeds with its last
    chunk. With an ``idempotency_key`` (or a fixed ``job_id``) already in use,
    the existing job is returned, or ``IdempotencyConflict`` raised when its
    request differs.
    """
    job_id = job_id or str(uuid.uuid4())
    digest = request_digest(request)
    chunked = bool(chunks) and len(chunks or ()) > 1
    # One statement for a whole job (no transaction round trips); parent and chunks commit together.
    with conn.transaction() if chunked else nullcontext():
        row = conn.execute(
            f"INSERT INTO jobs (id, kind, status, queue, request, request_sha256, progress_total, max_attempts, "
            f"idempotency_key, sent_at, chunks, finalize) "
            f"VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s, %s, now(), %s, %s) "
            f"ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
            (
                job_id,
                str(kind),
                queue,
                Jsonb(request),
                digest,
                total,
                max_attempts,
                idempotency_key,
                len(chunks or ()) if chunked else 0,
                finalize and chunked,
            ),
        ).fetchone()
        if row is not None and chunked:
            assert chunks is not None
            messages = _insert_chunks(
                conn, kind=kind, queue=queue, parent_id=job_id, chunks=chunks, max_attempts=max_attempts
            )
            return Created(job_info(row), True, messages)
    if row is not None:
        return Created(job_info(row), True, [(job_id, queue)])
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
            chunks=chunks,
            finalize=finalize,
        )
    if existing[0] != digest:
        raise IdempotencyConflict(
            f"idempotency key {idempotency_key!r} was used for a different request (job {existing[1]})",
            detail={"idempotency_key": idempotency_key, "job_id": str(existing[1])},
        )
    info = job_info(existing[1:])
    return Created(info, False, _unsent(conn, info))


@dataclass(frozen=True)
class Chunk:
    """One chunk job of a parent: its request, its item count, and where its items start in the parent."""

    request: dict[str, Any]
    total: int
    offset: int


def split_list(request: dict[str, Any], field: str, size: int) -> list[Chunk] | None:
    """Chunks of ``size`` items of ``request[field]`` (the rest of the request copied), or ``None`` if it fits one."""
    items = request[field]
    if size <= 0 or len(items) <= size:
        return None
    return [
        Chunk({**request, field: items[start : start + size]}, len(items[start : start + size]), start)
        for start in range(0, len(items), size)
    ]


def _insert_chunks(
    conn: psycopg.Connection,
    *,
    kind: JobKind,
    queue: str,
    parent_id: str,
    chunks: list[Chunk],
    max_attempts: int,
) -> list[tuple[str, str]]:
    rows = [
        (
            str(uuid.uuid4()),
            str(kind),
            queue,
            Jsonb(chunk.request),
            request_digest(chunk.request),
            chunk.total,
            max_attempts,
            parent_id,
            index,
            chunk.offset,
        )
        for index, chunk in enumerate(chunks)
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO jobs (id, kind, status, queue, request, request_sha256, progress_total, max_attempts, "
            "sent_at, parent_id, chunk_index, item_offset) "
            "VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s, now(), %s, %s, %s)",
            rows,
        )
    return [(row[0], queue) for row in rows]


def _unsent(conn: psycopg.Connection, info: JobInfo) -> list[tuple[str, str]]:
    """What to send again for a job submitted twice: itself while queued, or its queued chunks."""
    if not info.chunks:
        return [(info.id, info.queue)] if info.status == JobStatus.QUEUED else []
    rows = conn.execute(
        "SELECT id, queue FROM jobs WHERE parent_id = %s AND status = 'queued' ORDER BY chunk_index", (info.id,)
    ).fetchall()
    return [(str(job_id), queue) for job_id, queue in rows]


def get_job(*, conn: psycopg.Connection, job_id: str) -> JobInfo:
    """The job's current row; ``JobNotFound`` when there is none."""
    try:
        uuid.UUID(str(job_id))
    except ValueError as exc:
        raise JobNotFound(f"no job {job_id!r}: job ids are UUIDs", detail={"job_id": str(job_id)}) from exc
    row = conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s", (str(job_id),)).fetchone()
    if row is None:
        raise JobNotFound(f"no job {job_id}", detail={"job_id": str(job_id)})
    return job_info(row)


def list_jobs(
    *, conn: psycopg.Connection, status: JobStatus | None = None, limit: int = 20, chunks: bool = False
) -> list[JobInfo]:
    """The newest jobs first, optionally of one status; chunk jobs only when ``chunks``."""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE (%(status)s::text IS NULL OR status = %(status)s) "
        "AND (%(chunks)s OR parent_id IS NULL) ORDER BY created_at DESC LIMIT %(limit)s",
        {"status": str(status) if status else None, "limit": limit, "chunks": chunks},
    ).fetchall()
    return [job_info(row) for row in rows]


def cancel_job(*, conn: psycopg.Connection, job_id: str) -> JobInfo:
    """Cancel a queued or running job (a parent's open chunks with it); a finished job is returned unchanged."""
    row = conn.execute(
        f"UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), lease_expires_at = NULL "
        f"WHERE id = %s AND status IN ('queued', 'running') RETURNING {COLUMNS}",
        (job_id,),
    ).fetchone()
    return job_info(row) if row is not None else get_job(conn=conn, job_id=job_id)
