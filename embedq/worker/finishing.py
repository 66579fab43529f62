"""Finishing a job, the same way for every kind: its outputs and final state in one fenced transaction.

``finish`` writes what the runner's ``Outcome`` asks (outputs keyed by job
and item, or by content, so a duplicate delivery writes nothing twice), marks
the job succeeded under its claim (the fence: a worker that lost the job
writes nothing), names the backend that computed its vectors in the summary,
and, for a chunk whose parent this completes, merges the chunks' summaries
into the parent's with the kind's ``merge``, all in one transaction. The
database's trigger counts the chunks and moves the parent's state; which
figures add up is the kind's business, in Python.
"""

from __future__ import annotations

from typing import Any

import psycopg

from api_client.kinds import Kind
from embedq.worker.lease import stopped
from embedq.worker.runners import Outcome
from embedq.worker.runtime import Runtime
from embedq.worker.store import jobs as jobs_store
from embedq.worker.store.jobs import Claim


def finish(rt: Runtime, claim: Claim, spec: Kind, outcome: Outcome) -> dict[str, Any]:
    """Record ``outcome`` as the job's end; returns the summary stored. ``JobStopped`` if the job is not ours."""
    summary = dict(outcome.summary)
    if rt.job_backends:
        summary.setdefault("backend", ",".join(sorted(rt.job_backends)))
    conn = rt.conn
    with conn.transaction():
        if outcome.write is not None:
            summary.update(outcome.write(conn) or {})
        if not jobs_store.finish_job(
            conn=conn, claim=claim, result=summary, total=outcome.total, notice=outcome.notice
        ):
            raise stopped(conn, claim)
        if claim.parent_id is not None:
            merge_parent(conn, claim.parent_id, spec)
    return summary


def merge_parent(conn: psycopg.Connection, parent_id: str, spec: Kind) -> None:
    """Give a parent that its last chunk just completed the merge of its chunks' summaries."""
    summaries = jobs_store.chunk_summaries_to_merge(conn=conn, parent_id=parent_id)
    if summaries is None:
        return  # chunks still running, a parent that finalizes itself, or merged already
    merged = {**spec.merge(summaries), "chunks": len(summaries)}
    jobs_store.set_parent_summary(conn=conn, parent_id=parent_id, result=merged)
