"""examples/plain_celery.py: Celery and JSON in, plain SQL out, against the real worker."""

from __future__ import annotations

import re

import numpy as np

from tests import helpers
from tests.examples.running import run_example


def test_sends_tasks_reads_outcomes_and_vectors(example_env, settings, db) -> None:
    env = {**example_env, "EMBEDQ_RESULT_BACKEND": settings.result_backend}
    out = run_example(["examples/plain_celery.py"], env)

    jobs = dict(re.findall(r"^(\w+) job ([0-9a-f-]{36}): succeeded$", out, re.MULTILINE))
    assert set(jobs) == {"encode", "similarity"}, out
    for kind, job_id in jobs.items():
        row = helpers.job_row(db, job_id)
        assert (row["kind"], row["status"]) == (kind, "succeeded")
    assert f"vectors of job {jobs['encode']} read with SQL: 3 x 384" in out
    assert helpers.job_vectors_sql(db, jobs["encode"]).shape == (3, 384)
    from_vectors, from_scores = (
        np.array(re.search(rf"{start}.*\[(.*)\]", out).group(1).split(), dtype=float)
        for start in ("from those vectors", "similarity job's scores")
    )
    np.testing.assert_allclose(from_vectors, from_scores, atol=2e-4)
