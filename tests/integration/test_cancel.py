"""Cancelling queued and running jobs."""

from __future__ import annotations

import pytest

from api_client import EmbedQ, JobStatus
from api_client.errors import JobCancelled
from tests import helpers


def test_cancel_queued_and_running_jobs(eq: EmbedQ, db) -> None:
    running = eq.encode(helpers.unique_texts(2000), batch_size=8)
    helpers.wait_until(lambda: running.progress[0] > 0, what="the long job to make progress")
    queued = eq.encode(helpers.unique_texts(3), lane="batch")  # behind the long one, in the batch lane
    assert queued.status == JobStatus.QUEUED

    assert queued.cancel() == JobStatus.CANCELLED
    assert running.cancel() == JobStatus.CANCELLED

    with pytest.raises(JobCancelled):
        queued.result(timeout=10)
    with pytest.raises(JobCancelled):
        running.result(timeout=10)

    # The worker stops the running job between batches and goes on with new work.
    after = eq.encode(helpers.unique_texts(2))
    assert after.result(timeout=60).shape == (2, 384)
    assert 0 < running.progress[0] < 2000
    assert db.execute("SELECT count(*) FROM encode_outputs WHERE job_id = %s", (running.id,)).fetchone()[0] == 0
    row = helpers.job_row(db, queued.id)
    assert row["started_at"] is None and row["attempts"] == 0 and row["status"] == "cancelled"


def test_cancelling_a_finished_job_changes_nothing(eq: EmbedQ) -> None:
    job = eq.encode(helpers.unique_texts(2))
    job.result(timeout=60)
    assert job.cancel() == JobStatus.SUCCEEDED
    assert job.result(timeout=1).shape == (2, 384)
