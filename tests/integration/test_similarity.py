"""Similarity and paraphrase jobs end to end: real worker, real Redis, real Postgres, the real model."""

from __future__ import annotations

import copy
import json
import uuid

import numpy as np
import pytest
from celery import Celery
from sentence_transformers.util import paraphrase_mining

from api_client import EmbedQ
from api_client.db import sqlalchemy_url
from api_client.errors import BadRequest, LimitExceeded, UnknownModel
from api_client.settings import get_settings
from tests import helpers

QUEUE = "embedq.cpu.interactive"

# Support-desk questions said twice in other words, for the paraphrase tests.
NEAR_DUPLICATES = [
    "How do I reset the PIN on my card?",
    "How can I reset my card's PIN?",
    "My card payment was declined at the shop.",
    "The shop declined my card payment.",
    "Why hasn't my bank transfer arrived yet?",
    "My bank transfer still hasn't arrived, why?",
    "I lost my card, please block it.",
    "Please block my card, I have lost it.",
]


def library_scores(st_model, queries: list[str], texts: list[str], metric: str, *, pairwise: bool) -> np.ndarray:
    """What ``SentenceTransformer.similarity`` (or ``similarity_pairwise``) gives with ``metric`` set on the model."""
    model = copy.deepcopy(st_model)
    model.similarity_fn_name = metric
    a, b = model.encode(queries), model.encode(texts)
    scores = model.similarity_pairwise(a, b) if pairwise else model.similarity(a, b)
    return scores.numpy()


def assert_close(scores: np.ndarray, expected: np.ndarray) -> None:
    """Within 1e-5, relative to the score's size: a Manhattan distance (~15 here) sums 384 components'
    float32 noise between the worker's forward pass (one torch thread) and this process's."""
    assert scores.shape == expected.shape
    assert (np.abs(scores - expected) / np.maximum(1.0, np.abs(expected))).max() < 1e-5


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_equals_the_library_for_each_metric(eq: EmbedQ, st_model, metric: str) -> None:
    texts = helpers.unique_texts(8)
    queries, corpus = texts[:3], texts[3:]
    scores = eq.similarity(queries, corpus, metric=metric).result(timeout=60)
    assert scores.dtype == np.float32 and scores.shape == (3, 5)
    assert_close(scores, library_scores(st_model, queries, corpus, metric, pairwise=False))
    # On the very vectors the job used (now in the cache), the library's own function gives the same floats.
    vectors = eq.encode(texts).result(timeout=60)
    model = copy.deepcopy(st_model)
    model.similarity_fn_name = metric
    np.testing.assert_allclose(scores, model.similarity(vectors[:3], vectors[3:]).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "manhattan"])
def test_pairwise_equals_similarity_pairwise(eq: EmbedQ, st_model, metric: str) -> None:
    texts = helpers.unique_texts(8)
    queries, corpus = texts[:4], texts[4:]
    scores = eq.similarity(queries, corpus, metric=metric, pairwise=True).result(timeout=60)
    assert scores.dtype == np.float32 and scores.shape == (4,)
    assert_close(scores, library_scores(st_model, queries, corpus, metric, pairwise=True))


def test_texts_repeated_across_queries_and_texts_keep_their_places(eq: EmbedQ, st_model) -> None:
    a, b, c = helpers.unique_texts(3)
    queries, corpus = [a, b, a], [c, a, b, c]
    job = eq.similarity(queries, corpus, metric="euclidean")
    scores = job.result(timeout=60)
    assert_close(scores, library_scores(st_model, queries, corpus, "euclidean", pairwise=False))
    assert job.info().result["encoded"] == 3


def test_vectors_come_through_the_embedding_cache(eq: EmbedQ, st_model) -> None:
    texts = helpers.unique_texts(6)
    queries, corpus = texts[:2], texts[2:]
    first = eq.similarity(queries, corpus)
    first.result(timeout=60)
    assert first.info().result["encoded"] == 6

    others = helpers.unique_texts(5)
    eq.encode(others).result(timeout=60)
    cached = eq.similarity(others[:2], others[2:])
    scores = cached.result(timeout=60)
    summary = cached.info().result
    assert summary["encoded"] == 0 and summary["cached"] == 5
    assert np.abs(scores - library_scores(st_model, others[:2], others[2:], "cosine", pairwise=False)).max() < 1e-5


def paraphrase_texts() -> list[str]:
    texts = helpers.banking_texts(30, offset=100)
    # Interleave the near-duplicates so that pairs are not just neighbours.
    for position, text in zip(range(2, 60, 4), NEAR_DUPLICATES, strict=False):
        texts.insert(position, text)
    return texts


def test_paraphrases_equal_paraphrase_mining(eq: EmbedQ, st_model) -> None:
    texts = paraphrase_texts()
    expected = [pair for pair in paraphrase_mining(st_model, texts, top_k=100) if pair[0] >= 0.8]
    assert len(expected) >= 4, "the test texts should hold some near-duplicates"
    assert all(abs(score - 0.8) > 1e-4 for score, _, _ in expected), "a score this close to 0.8 may flip"

    pairs = eq.paraphrases(texts, threshold=0.8, top_k=100).result(timeout=60)
    assert {(i, j) for _, i, j in pairs} == {(i, j) for _, i, j in expected}
    ours = np.array([score for score, _, _ in pairs])
    # Best first, and position by position the library's scores: the order is the same up to ties.
    assert np.all(np.diff(ours) <= 1e-6)
    assert np.abs(ours - np.array([score for score, _, _ in expected])).max() < 1e-5
    by_pair = {(i, j): score for score, i, j in expected}
    assert all(abs(score - by_pair[i, j]) < 1e-5 for score, i, j in pairs)
    assert all(i < j for _, i, j in pairs)


def test_exact_duplicates_are_paired_like_the_library(eq: EmbedQ, st_model) -> None:
    texts = helpers.banking_texts(6, offset=300)
    texts = [*texts, texts[1], texts[4], texts[1]]
    expected = paraphrase_mining(st_model, texts, top_k=3)
    pairs = eq.paraphrases(texts, top_k=3).result(timeout=60)
    assert {(i, j) for _, i, j in pairs} == {(i, j) for _, i, j in expected}
    assert np.abs(np.array([p[0] for p in pairs]) - np.array([p[0] for p in expected])).max() < 1e-5
    assert {(1, 6), (1, 8), (6, 8), (4, 7)} <= {(i, j) for score, i, j in pairs if score > 0.999}


def test_a_threshold_above_every_score_gives_no_pairs(eq: EmbedQ) -> None:
    job = eq.paraphrases(paraphrase_texts(), threshold=1.5)
    assert job.result(timeout=60) == []
    assert job.info().result["pairs"] == 0


def jobs_count(db) -> int:
    return db.execute("SELECT count(*) FROM jobs").fetchone()[0]


@pytest.mark.parametrize(
    ("submit", "error", "message"),
    [
        (lambda eq: eq.similarity(["a"], ["b"], metric="hamming"), BadRequest, "metric: "),
        (lambda eq: eq.similarity(["a", "b"], ["c"], pairwise=True), BadRequest, "pairwise: queries and texts"),
        (lambda eq: eq.similarity([], ["b"]), BadRequest, "queries: the list is empty"),
        (lambda eq: eq.similarity(["a"], ["b", 7]), BadRequest, "texts[1]: expected a string, got int"),
        (lambda eq: eq.similarity(["a"], "b"), BadRequest, "texts: expected a list of strings, got str"),
        (lambda eq: eq.paraphrases(["only one"]), BadRequest, "texts: paraphrase mining needs at least two texts"),
        (lambda eq: eq.paraphrases(["a", "b"], max_pairs=1_000_001), LimitExceeded, "max_pairs: 1,000,001 is over"),
        (lambda eq: eq.paraphrases(["a", "b"], top_k=0), BadRequest, "top_k: "),
        (lambda eq: eq.similarity(["a"], ["b"], model="no-such-model"), UnknownModel, "model: unknown model"),
        (lambda eq: eq.paraphrases(["a", "b"], model="no-such-model"), UnknownModel, "model: unknown model"),
    ],
)
def test_client_refuses_bad_input_before_queueing(eq: EmbedQ, db, submit, error, message: str) -> None:
    with pytest.raises(error) as caught:
        submit(eq)
    assert type(caught.value) is error
    assert message in caught.value.message
    assert jobs_count(db) == 0


def test_similarity_over_the_cell_limit_is_refused(eq: EmbedQ, db, worker_env: dict[str, str]) -> None:
    texts = helpers.unique_texts(8)
    with EmbedQ(get_settings({**worker_env, "EMBEDQ_MAX_SIMILARITY_CELLS": "10"}, env_file=False)) as small:
        with pytest.raises(LimitExceeded) as caught:
            small.similarity(texts[:4], texts[4:])
        assert caught.value.detail["field"] == "queries"
        assert "4 x 4 = 16 scores is over the limit of 10 (max_similarity_cells)" in caught.value.message
        assert jobs_count(db) == 0
        # Pairwise, the same texts are only 4 scores: under the limit.
        assert small.similarity(texts[:4], texts[4:], pairwise=True).result(timeout=60).shape == (4,)


@pytest.fixture
def plain_celery(broker_url: str):
    """A Celery app that knows nothing of embedq but the broker URL."""
    app = Celery(broker=broker_url)
    yield app
    app.close()


def inline_job(eq: EmbedQ, db, task_id: str):
    """The job an inline message becomes, once the worker has recorded it (its id is the task id)."""
    helpers.wait_until(
        lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s", (task_id,)).fetchone(), what=f"job {task_id}"
    )
    return eq.job(task_id)


def test_plain_celery_similarity_with_an_inline_request(eq: EmbedQ, db, plain_celery: Celery, st_model) -> None:
    texts = helpers.unique_texts(5)
    task_id = str(uuid.uuid4())
    request = {"queries": texts[:2], "texts": texts[2:]}
    plain_celery.send_task("embedq.similarity", kwargs={"request": request}, queue=QUEUE, task_id=task_id)
    job = inline_job(eq, db, task_id)
    scores = job.result(timeout=60)
    assert scores.shape == (2, 3)
    assert np.abs(scores - library_scores(st_model, texts[:2], texts[2:], "cosine", pairwise=False)).max() < 1e-5
    assert job.info().kind == "similarity"


def test_plain_celery_paraphrases_with_an_inline_request(eq: EmbedQ, db, plain_celery: Celery, st_model) -> None:
    texts = paraphrase_texts()
    task_id = str(uuid.uuid4())
    request = {"texts": texts, "threshold": 0.8}
    plain_celery.send_task("embedq.paraphrases", kwargs={"request": request}, queue=QUEUE, task_id=task_id)
    pairs = inline_job(eq, db, task_id).result(timeout=60)
    expected = [pair for pair in paraphrase_mining(st_model, texts) if pair[0] >= 0.8]
    assert pairs and {(i, j) for _, i, j in pairs} == {(i, j) for _, i, j in expected}


def test_plain_celery_malformed_request_fails_naming_the_field(eq: EmbedQ, db, plain_celery: Celery) -> None:
    task_id = str(uuid.uuid4())
    plain_celery.send_task("embedq.similarity", kwargs={"request": {"queries": ["a"]}}, queue=QUEUE, task_id=task_id)
    with pytest.raises(BadRequest, match="texts: missing"):
        inline_job(eq, db, task_id).result(timeout=60)
    row = helpers.job_row(db, task_id)
    assert row["kind"] == "similarity" and row["status"] == "failed"
    assert row["error"]["detail"]["field"] == "texts"


@pytest.fixture
def backend_celery(broker_url: str, database_url: str):
    """A plain Celery app that reads outcomes from the workers' database result backend."""
    app = Celery(broker=broker_url, backend="db+" + sqlalchemy_url(database_url))
    yield app
    app.close()


def assert_no_bulk(outcome: dict) -> None:
    """The outcome is a summary: no vectors or score arrays travel through the result backend."""
    assert len(json.dumps(outcome)) < 2000, outcome


def test_result_backend_gives_an_encode_jobs_outcome(eq: EmbedQ, backend_celery: Celery, st_model) -> None:
    texts = helpers.unique_texts(4)
    sent = backend_celery.send_task("embedq.encode", kwargs={"request": {"texts": texts}})
    outcome = sent.get(timeout=60)
    assert outcome["job_id"] == sent.id
    assert outcome["kind"] == "encode" and outcome["status"] == "succeeded" and outcome["error"] is None
    assert outcome["result"]["count"] == 4
    assert "encode_outputs" in outcome["output"]
    assert_no_bulk(outcome)
    # The output is where the outcome says it is.
    vectors = eq.job(sent.id).result(timeout=5)
    assert np.abs(vectors - st_model.encode(texts)).max() < 1e-5


def test_result_backend_gives_a_similarity_jobs_outcome(eq: EmbedQ, backend_celery: Celery) -> None:
    texts = helpers.unique_texts(5)
    request = {"queries": texts[:2], "texts": texts[2:]}
    sent = backend_celery.send_task("embedq.similarity", kwargs={"request": request}, queue=QUEUE)
    outcome = sent.get(timeout=60)
    assert outcome["job_id"] == sent.id
    assert outcome["kind"] == "similarity" and outcome["status"] == "succeeded"
    assert outcome["result"]["shape"] == [2, 3] and outcome["result"]["metric"] == "cosine"
    assert "job_arrays" in outcome["output"]
    assert_no_bulk(outcome)
    assert eq.job(sent.id).result(timeout=5).shape == (2, 3)


def test_result_backend_gives_a_refused_requests_outcome(eq: EmbedQ, backend_celery: Celery) -> None:
    sent = backend_celery.send_task("embedq.similarity", kwargs={"request": {"queries": ["a"], "texts": []}})
    outcome = sent.get(timeout=60)
    assert outcome["job_id"] == sent.id and outcome["kind"] == "similarity"
    assert outcome["status"] == "failed" and outcome["result"] is None
    assert outcome["error"]["type"] == "BadRequest"
    assert outcome["error"]["detail"]["field"] == "texts"
