"""Holding a claimed job: progress, lease renewal and cancellation checks between batches."""

from __future__ import annotations

import time

import psycopg

from api_client.states import JobStatus
from api_client.store import jobs as jobs_store
from api_client.store.jobs import Claim


class JobStopped(Exception):
    """The job must stop: it was cancelled, or another worker took it over."""

    def __init__(self, job_id: str, status: JobStatus) -> None:
        super().__init__(f"job {job_id} is {status} elsewhere; stopping")
        self.status = status


class Lease:
    """Reports progress at most every ``interval`` seconds, renewing the lease each time."""

    def __init__(
        self,
        *,
        conn: psycopg.Connection,
        claim: Claim,
        total: int,
        done: int,
        lease_seconds: float,
        interval: float,
    ) -> None:
        """``claim_job`` has just set the lease, so the first write waits ``interval`` seconds."""
        self.conn = conn
        self.claim = claim
        self.total = total
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.done = done
        self._last = time.monotonic()

    def beat(self, done: int, *, force: bool = False) -> None:
        """Record ``done`` items; raise ``JobStopped`` if the job is no longer this worker's."""
        self.done = done
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        status = jobs_store.heartbeat(
            conn=self.conn, claim=self.claim, done=done, total=self.total, lease_seconds=self.lease_seconds
        )
        if status is not None:
            raise JobStopped(self.claim.job_id, status)
