"""Encode jobs end to end: real worker, real Redis, real Postgres, the real model."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers.util import quantize_embeddings

from api_client import EmbedQ, JobStatus
from api_client.errors import IdempotencyConflict
from tests import helpers


def test_result_equals_sentence_transformers_in_input_order(eq: EmbedQ, st_model) -> None:
    texts = helpers.unique_texts(40)
    job = eq.encode(texts, batch_size=16)
    vectors = job.result(timeout=60)
    direct = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    assert vectors.dtype == np.float32 and vectors.shape == (40, 384)
    assert np.abs(vectors - direct).max() < 1e-5
    info = job.info()
    assert info.status == JobStatus.SUCCEEDED
    assert info.progress == (40, 40)
    assert info.result is not None and info.result["encoded"] == 40 and info.result["cached"] == 0


@pytest.mark.parametrize(("normalize", "truncate_dim"), [(True, None), (False, 128), (True, 64)])
def test_normalize_and_truncate_match_the_library(eq: EmbedQ, st_model, normalize, truncate_dim) -> None:
    texts = helpers.unique_texts(12)
    vectors = eq.encode(texts, normalize=normalize, truncate_dim=truncate_dim).result(timeout=60)
    direct = st_model.encode(texts, normalize_embeddings=normalize, truncate_dim=truncate_dim)
    assert vectors.shape == direct.shape
    assert np.abs(vectors - direct).max() < 1e-5


def test_prompt_matches_the_library_and_is_cached_apart(eq: EmbedQ, st_model) -> None:
    texts = helpers.unique_texts(6)
    plain = eq.encode(texts).result(timeout=60)
    prompted = eq.encode(texts, prompt="query: ").result(timeout=60)
    assert np.abs(prompted - st_model.encode(texts, prompt="query: ")).max() < 1e-5
    assert np.abs(prompted - plain).max() > 1e-3


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_precisions_are_bit_exact(eq: EmbedQ, st_model, precision: str) -> None:
    texts = helpers.unique_texts(30)
    ours = eq.encode(texts, precision=precision, normalize=True).result(timeout=60)
    direct = st_model.encode(texts, precision=precision, normalize_embeddings=True)
    assert ours.dtype == direct.dtype
    np.testing.assert_array_equal(ours, direct)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_int8_uses_fixed_ranges_so_jobs_are_comparable(eq: EmbedQ, st_model, db, precision: str) -> None:
    texts = helpers.unique_texts(20)
    first = eq.encode(texts[:10], precision=precision, normalize=True).result(timeout=120)
    job = eq.encode(texts, precision=precision, normalize=True)
    both = job.result(timeout=120)
    # The same text quantizes the same way whatever else is in the job.
    np.testing.assert_array_equal(both[:10], first)

    model_id, minimums, maximums = db.execute(
        "SELECT model_id, minimums, maximums FROM quantization_ranges WHERE dimension = 384 AND normalized"
    ).fetchone()
    assert model_id == job.info().result["model_id"]  # the ranges are those of the model version that encoded
    ranges = np.array([minimums, maximums], dtype=np.float32)
    direct = quantize_embeddings(st_model.encode(texts, normalize_embeddings=True), precision=precision, ranges=ranges)
    assert both.dtype == direct.dtype
    diff = np.abs(both.astype(np.int16) - direct.astype(np.int16))
    assert diff.max() <= 1  # floor() at a bucket edge may differ by one step
    assert (diff == 0).mean() > 0.99
    # A job's own min/max (the library's default) would not be comparable across jobs:
    per_call = st_model.encode(texts[:10], precision=precision, normalize_embeddings=True)
    assert not np.array_equal(per_call, first)


def test_second_submit_is_served_from_the_cache(eq: EmbedQ, db) -> None:
    texts = helpers.unique_texts(25)
    first = eq.encode(texts)
    vectors = first.result(timeout=60)
    rows_before = db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    second = eq.encode(texts)
    again = second.result(timeout=60)
    np.testing.assert_array_equal(again, vectors)
    summary = second.info().result
    assert summary is not None and summary["cached"] == 25 and summary["encoded"] == 0
    assert db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == rows_before == 25


def test_repeated_texts_in_one_job_are_encoded_once(eq: EmbedQ, db) -> None:
    texts = helpers.unique_texts(3)
    job = eq.encode([texts[0], texts[1], texts[0], texts[2], texts[0]])
    vectors = job.result(timeout=60)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[4])
    summary = job.info().result
    assert summary is not None and summary["count"] == 5 and summary["unique"] == 3
    assert summary["encoded"] == 3 and summary["cached"] == 0
    assert db.execute("SELECT count(*) FROM encode_outputs WHERE job_id = %s", (job.id,)).fetchone()[0] == 5


def test_idempotent_submit_returns_the_same_job(eq: EmbedQ, db) -> None:
    texts = helpers.unique_texts(4)
    first = eq.encode(texts, idempotency_key="ticket-42")
    second = eq.encode(texts, idempotency_key="ticket-42")
    assert first.id == second.id
    first.result(timeout=60)
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    with pytest.raises(IdempotencyConflict, match="ticket-42"):
        eq.encode(texts, idempotency_key="ticket-42", normalize=True)


def test_states_and_progress_of_a_long_job(eq: EmbedQ, db) -> None:
    texts = helpers.unique_texts(1500)
    job = eq.encode(texts, batch_size=8)
    assert job.progress[1] == 1500
    helpers.wait_until(lambda: 0 < job.progress[0] < 1500, what="partial progress")
    assert job.status == JobStatus.RUNNING
    info = job.wait(timeout=240)
    assert info.status == JobStatus.SUCCEEDED and info.progress == (1500, 1500)
    assert info.started_at is not None and info.finished_at is not None and info.attempts == 1
    row = helpers.job_row(db, job.id)
    assert row["lease_expires_at"] is None
    node = row["worker"].split("/")[0]
    assert db.execute("SELECT 1 FROM workers WHERE name = %s", (node,)).fetchone(), row["worker"]


def test_a_job_can_be_found_again_by_id(eq: EmbedQ) -> None:
    job = eq.encode(helpers.unique_texts(2))
    job.result(timeout=60)
    same = eq.job(job.id)
    assert same.status == JobStatus.SUCCEEDED
    assert same.result(timeout=1).shape == (2, 384)
    assert eq.jobs(limit=5)[0].id == job.id


def test_prompt_name_resolves_like_the_library(eq: EmbedQ, st_model) -> None:
    texts = helpers.unique_texts(4)
    ours = eq.encode(texts, prompt_name="query").result(timeout=60)
    direct = st_model.encode(texts, prompt_name="query")
    assert ours.shape == direct.shape
    # Within float32 noise: the worker runs torch on 1 thread, this process on all cores.
    assert np.abs(ours - direct).max() < 1e-5


def test_hub_style_name_of_a_bundled_model_shares_its_cache(eq: EmbedQ, db) -> None:
    texts = helpers.unique_texts(3)
    short = eq.encode(texts).result(timeout=60)
    job = eq.encode(texts, model="sentence-transformers/all-MiniLM-L6-v2")
    np.testing.assert_array_equal(job.result(timeout=60), short)
    assert job.info().result["cached"] == 3
    assert db.execute("SELECT count(*) FROM models WHERE name LIKE 'sentence-transformers/%'").fetchone()[0] == 0
