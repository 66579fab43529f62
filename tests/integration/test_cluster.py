"""The cluster kind end to end: the library's community detection on the texts' vectors, by every door."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from celery import Celery
from sentence_transformers.util import community_detection

from api_client import EmbedQ
from api_client.errors import BadRequest, UnknownModel
from tests import helpers

QUEUE = "embedq.cpu.interactive"


def support_texts() -> list[str]:
    """Banking77 texts: many ask the same few things in other words, so they form clusters at 0.75."""
    return helpers.banking_texts(240)


def library_clusters(vectors: np.ndarray, threshold: float, min_size: int) -> list[list[int]]:
    return [list(map(int, cluster)) for cluster in community_detection(vectors, threshold, min_size)]


def test_clusters_are_the_library_community_detection_on_the_job_vectors(eq: EmbedQ, db, st_model) -> None:
    texts = support_texts()
    job = eq.cluster(texts, threshold=0.75, min_size=5)
    clusters = job.result(timeout=120)
    assert clusters and all(len(cluster) >= 5 for cluster in clusters)
    assert [len(c) for c in clusters] == sorted((len(c) for c in clusters), reverse=True)  # largest first
    members = [i for cluster in clusters for i in cluster]
    assert len(members) == len(set(members))  # a text is in one cluster at most
    # The job's own vectors (cached now) give exactly these clusters with the library's function...
    vectors = eq.encode(texts).result(timeout=120)
    assert clusters == library_clusters(vectors, 0.75, 5)
    # ... and the library's vectors computed here give the same ones.
    assert clusters == library_clusters(st_model.encode(texts), 0.75, 5)
    summary = job.info().result
    assert summary["clusters"] == len(clusters) and summary["clustered"] == len(members)
    assert summary["backend"] == "torch" and summary["count"] == len(texts)
    assert summary["encoded"] + summary["cached"] == len(set(texts))


def test_thresholds_and_sizes_change_the_clusters_as_in_the_library(eq: EmbedQ, db) -> None:
    texts = support_texts()
    vectors = eq.encode(texts).result(timeout=120)
    for threshold, min_size in [(0.6, 3), (0.9, 2), (0.99, 50)]:
        clusters = eq.cluster(texts, threshold=threshold, min_size=min_size).result(timeout=120)
        assert clusters == library_clusters(vectors, threshold, min_size)
    assert eq.cluster(texts[:3], threshold=0.99, min_size=50).result(timeout=60) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"min_size": 0}, "min_size"),
        ({"min_size": "10"}, "min_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"model": "no-such-model"}, "unknown model"),
    ],
)
def test_bad_requests_are_refused_before_a_job_exists(eq: EmbedQ, db, changes: dict, message: str) -> None:
    before = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    raw = {"texts": ["a text", "another"], **changes}
    with pytest.raises((BadRequest, UnknownModel), match=message):
        eq.submit("cluster", raw)
    with pytest.raises(BadRequest, match=r"texts\[1\]: the text is empty"):
        eq.cluster(["a text", "  "])
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == before


@pytest.fixture
def plain_celery(broker_url: str):
    app = Celery(broker=broker_url)
    yield app
    app.close()


def test_a_plain_celery_client_clusters_with_json_alone(eq: EmbedQ, db, plain_celery: Celery) -> None:
    texts = support_texts()[:120]
    task_id = str(uuid.uuid4())
    request = {"texts": texts, "threshold": 0.75, "min_size": 4}
    plain_celery.send_task("embedq.cluster", kwargs={"request": request}, queue=QUEUE, task_id=task_id)
    helpers.wait_until(lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s", (task_id,)).fetchone(), what="the job")
    clusters = eq.job(task_id).result(timeout=120)
    vectors = eq.encode(texts).result(timeout=120)
    assert clusters == library_clusters(vectors, 0.75, 4)
    # A bad one gets a failed row saying why, as the client's refusal does.
    bad_id = str(uuid.uuid4())
    plain_celery.send_task("embedq.cluster", kwargs={"request": {"texts": texts, "min_size": -1}}, task_id=bad_id)
    helpers.wait_until(lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s", (bad_id,)).fetchone(), what="a row")
    with pytest.raises(BadRequest, match="min_size"):
        eq.job(bad_id).result(timeout=60)


def test_the_cli_prints_each_cluster_with_its_lines(eq: EmbedQ, worker_env: dict, tmp_path: Path) -> None:
    texts = support_texts()[:160]
    path = tmp_path / "tickets.txt"
    path.write_text("\n".join(texts) + "\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "embedq.worker.cli", "cluster", str(path), *args],
            capture_output=True,
            text=True,
            timeout=180,
            env={**helpers.env_without_embedq(), **worker_env},
        )

    as_json = cli("--min-size", "4", "--json")
    assert as_json.returncode == 0, as_json.stderr
    clusters = json.loads(as_json.stdout)
    assert clusters == eq.cluster(texts, min_size=4).result(timeout=120)
    lines = cli("--min-size", "4")
    assert lines.returncode == 0, lines.stderr
    out = lines.stdout.splitlines()
    assert out[0] == f"# cluster 1: {len(clusters[0])} texts"
    first = clusters[0][0]
    assert out[1] == f"{first + 1}\t{texts[first]}"
    refused = cli("--threshold", "3")
    assert refused.returncode == 2 and "threshold" in refused.stderr and len(refused.stderr.splitlines()) == 1
