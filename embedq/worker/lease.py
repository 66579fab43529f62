"""Holding a claimed job: a background lease keeper, and progress with cancellation checks between batches.

The keeper renews the lease every third of its length from its own thread
and connection, so a long model load or a slow forward pass never lets the
lease lapse while the worker is alive. Progress reports go through the task's
own connection between batches; they are where a cancelled or taken-over job
is noticed and stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from api_client.states import JobStatus
from embedq.worker.db import reopen
from embedq.worker.store import jobs as jobs_store
from embedq.worker.store.jobs import Claim

log = logging.getLogger(__name__)


class JobStopped(Exception):
    """The job must stop: it was cancelled, or another worker took it over."""

    def __init__(self, job_id: str, status: JobStatus) -> None:
        super().__init__(f"job {job_id} is {status} elsewhere; stopping")
        self.status = status


class LeaseKeeper:
    """One thread per worker process that keeps the lease of the job in hand alive."""

    def __init__(self, database_url: str, application_name: str, lease_seconds: float) -> None:
        self._url = database_url
        self._application_name = application_name
        self._lease_seconds = lease_seconds
        self._claim: Claim | None = None
        self._changed = threading.Condition()
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self.renewals = 0
        """Renewal attempts made so far (whether or not the job was still held)."""

    @contextmanager
    def holding(self, claim: Claim) -> Iterator[None]:
        """Keep ``claim``'s lease alive for the duration of the block."""
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="embedq-lease", daemon=True)
                self._thread.start()
            self._claim = claim
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._claim = None
                self._changed.notify()

    def _run(self) -> None:
        interval = self._lease_seconds / 3
        while True:
            with self._changed:
                while self._claim is None:
                    self._changed.wait()
                claim = self._claim
                deadline = time.monotonic() + interval
                while self._claim is claim and time.monotonic() < deadline:
                    self._changed.wait(deadline - time.monotonic())
                if self._claim is not claim:
                    continue
            self._renew(claim)

    def _renew(self, claim: Claim) -> None:
        try:
            self._conn = reopen(self._conn, self._url, application_name=self._application_name)
            jobs_store.extend_lease(conn=self._conn, claim=claim, lease_seconds=self._lease_seconds)
            self.renewals += 1
        except Exception as exc:  # the task's own connection reports database trouble; keep trying
            log.warning("could not renew the lease of job %s: %s", claim.job_id, exc)
            self._conn = None


class Progress:
    """Reports progress at most every ``interval`` seconds, noticing cancellation and takeover."""

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
        self.start = done
        self._last = time.monotonic()

    @property
    def advanced(self) -> bool:
        """Whether any item was done since the job was claimed."""
        return self.done > self.start

    def beat(self, done: int) -> None:
        """Record ``done`` items; raise ``JobStopped`` if the job is no longer this worker's."""
        self.done = done
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        status = jobs_store.record_progress(
            conn=self.conn, claim=self.claim, done=done, total=self.total, lease_seconds=self.lease_seconds
        )
        if status is not None:
            raise JobStopped(self.claim.job_id, status)


def stopped(conn: psycopg.Connection, claim: Claim) -> JobStopped:
    """Why a job's fenced write found it no longer held under ``claim``: its status now."""
    return JobStopped(claim.job_id, jobs_store.status_of(conn=conn, job_id=claim.job_id))
