"""Token-budget batching end to end: summaries report tokens and padding, a tiny budget still encodes everything."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from api_client import EmbedQ
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

LONG = (
    "The transfer I made on Monday still shows as pending, the recipient says nothing arrived, and the "
    "app only tells me to wait, so please tell me where the money is and when it will reach the account. "
)


def test_an_encode_summary_reports_tokens_and_padding(eq: EmbedQ, st_model) -> None:
    texts = [*helpers.unique_texts(1), f"hi {uuid.uuid4().hex[:6]}"]  # never cached: both encoded
    lengths = [len(ids) for ids in st_model.tokenizer(texts)["input_ids"]]  # [CLS] ... [SEP]
    job = eq.encode(texts, batch_size=2)
    job.result(timeout=60)
    summary = job.info().result
    assert summary is not None
    assert summary["batches"] == 1 and summary["batch_splits"] == 0  # the default budget does not bind
    assert summary["tokens"] == sum(lengths) and summary["padded_tokens"] == 2 * max(lengths)
    assert summary["padding_waste"] == round(1 - sum(lengths) / (2 * max(lengths)), 4) > 0


def test_a_chunked_jobs_parent_sums_its_chunks_token_figures(worker_env: dict[str, str], session_worker, db) -> None:
    with EmbedQ(get_settings({**worker_env, "EMBEDQ_CHUNK_SIZE": "4"}, env_file=False)) as client:
        job = client.encode(helpers.unique_texts(10))
        job.result(timeout=120)
        chunks = db.execute("SELECT result FROM jobs WHERE parent_id = %s", (job.id,)).fetchall()
        parent = job.info().result
    assert parent is not None and len(chunks) == 3
    for figure in ("tokens", "padded_tokens", "batches", "batch_splits"):
        assert parent[figure] == sum(chunk[0][figure] for chunk in chunks), figure
    assert parent["padding_waste"] == pytest.approx(1 - parent["tokens"] / parent["padded_tokens"], abs=1e-4)


@pytest.mark.slow
def test_long_texts_under_a_tiny_budget_run_in_small_batches(isolated_database, broker_url, tmp_path, st_model) -> None:
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_TOKEN_BUDGET="600")
    worker = helpers.start_worker(env, isolated_database, "token-budget@%h", tmp_path / "worker.log")
    texts = [f"{i}. " + LONG * (2 + i % 2) for i in range(8)]  # about 100 and 150 tokens
    try:
        with EmbedQ(get_settings(env, env_file=False)) as client:
            job = client.encode(texts, batch_size=8)
            vectors = job.result(timeout=300)
            summary = job.info().result
    finally:
        stop_worker(worker, timeout=30)
    assert summary is not None
    # Eight texts of 100 to 150 tokens in one batch of the library's: at most four per 600 tokens.
    assert summary["batches"] >= 2 and summary["batch_splits"] == summary["batches"] - 1
    assert summary["padded_tokens"] <= 600 * summary["batches"]
    np.testing.assert_allclose(vectors, st_model.encode(texts, batch_size=8), atol=1e-5)
