"""The lease keeper holds a claimed job's lease for as long as the worker holds the job.

These run on a database of their own: a session worker's sweeper would take
over the lapsed jobs they make.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from api_client.db import connect
from api_client.states import JobKind
from api_client.store import jobs as jobs_store
from worker.lease import LeaseKeeper


@pytest.fixture
def own_db(isolated_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(isolated_database, autocommit=True) as conn:
        yield conn


def lapsed(db, job_id: str) -> bool:
    return db.execute("SELECT lease_expires_at < now() FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def claimed(db: psycopg.Connection) -> jobs_store.Claim:
    """A job just claimed with a one-second lease."""
    info, _ = jobs_store.create_job(
        conn=db, kind=JobKind.ENCODE, queue="embedq.cpu.batch", request={"texts": ["x"]}, total=1, max_attempts=3
    )
    claim = jobs_store.claim_job(conn=db, job_id=info.id, worker="test/1", lease_seconds=1.0)
    assert claim is not None
    return claim


def test_the_keeper_renews_while_held_and_stops_when_released(own_db, isolated_database: str) -> None:
    claim = claimed(own_db)
    keeper = LeaseKeeper(lambda: connect(isolated_database), lease_seconds=1.0)
    with keeper.holding(claim):
        time.sleep(2.5)  # two and a half leases with no progress written
        assert not lapsed(own_db, claim.job_id)
    time.sleep(1.5)
    assert lapsed(own_db, claim.job_id)


def test_the_keeper_cannot_revive_a_job_taken_over(own_db, isolated_database: str) -> None:
    claim = claimed(own_db)
    own_db.execute(
        "UPDATE jobs SET attempts = attempts + 1, lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (claim.job_id,),
    )
    keeper = LeaseKeeper(lambda: connect(isolated_database), lease_seconds=1.0)
    with keeper.holding(claim):
        time.sleep(1.0)
        assert lapsed(own_db, claim.job_id)
