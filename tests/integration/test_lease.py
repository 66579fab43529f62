"""The lease keeper holds a claimed job's lease for as long as the worker holds the job.

These run on a database of their own: a session worker's sweeper would take
over the lapsed jobs they make.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from api_client.store import jobs as jobs_read
from embedq.worker.lease import LeaseKeeper
from embedq.worker.store import jobs as jobs_store
from tests.helpers import wait_until


@pytest.fixture
def own_db(isolated_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(isolated_database, autocommit=True) as conn:
        yield conn


def lease_left(db, job_id: str) -> float:
    """Seconds until the job's lease expires (negative once it lapsed), by the database's clock."""
    row = db.execute("SELECT extract(epoch FROM lease_expires_at - now()) FROM jobs WHERE id = %s", (job_id,))
    return float(row.fetchone()[0])


def claimed(db: psycopg.Connection) -> jobs_store.Claim:
    """A job just claimed with a one-second lease."""
    info = jobs_read.create_job(
        conn=db, kind="encode", queue="embedq.cpu.batch", request={"texts": ["x"]}, total=1, max_attempts=3
    ).info
    claim = jobs_store.claim_job(conn=db, job_id=info.id, kind="encode", worker="test/1", lease_seconds=1.0)
    assert claim is not None
    return claim


def test_the_keeper_renews_while_held_and_stops_when_released(own_db, isolated_database: str) -> None:
    claim = claimed(own_db)
    keeper = LeaseKeeper(isolated_database, "test-lease", lease_seconds=1.0)
    with keeper.holding(claim):
        # Three renewals: the job is held past three of its one-second leases with no progress written.
        wait_until(lambda: keeper.renewals >= 3, timeout=10, what="three lease renewals")
        assert lease_left(own_db, claim.job_id) > 0
    wait_until(lambda: lease_left(own_db, claim.job_id) < 0, timeout=10, what="the lease to lapse once released")


def test_the_keeper_cannot_revive_a_job_taken_over(own_db, isolated_database: str) -> None:
    claim = claimed(own_db)
    own_db.execute(
        "UPDATE jobs SET attempts = attempts + 1, lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (claim.job_id,),
    )
    keeper = LeaseKeeper(isolated_database, "test-lease", lease_seconds=1.0)
    with keeper.holding(claim):
        wait_until(lambda: keeper.renewals >= 2, timeout=10, what="two renewal attempts")
        assert lease_left(own_db, claim.job_id) < 0
