"""The similarity cores return what sentence-transformers returns on the same texts.

Every expected value comes from the library called directly (``model.similarity``,
``model.similarity_pairwise``, ``util.paraphrase_mining`` on the texts), never
from the functions under test.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sentence_transformers import SimilarityFunction, util

from api_client.errors import BadRequest
from embedq.cores.encode import encode
from embedq.cores.similarity import (
    METRICS,
    check_metric,
    check_paraphrase_options,
    paraphrases,
    similarity,
    similarity_pairwise,
)

TEXTS = [
    "How do I reset my card PIN?",
    "How can I reset the PIN on my card?",
    "I forgot my PIN, how do I change it?",
    "My card was declined at the supermarket.",
    "Why was my card declined in a shop today?",
    "Why did my card payment get declined?",
    "What exchange rate do you use for foreign payments?",
    "Which exchange rate applies when I pay abroad?",
    "How long does a bank transfer take to arrive?",
    "How long do transfers take to reach the other account?",
    "I was charged twice for the same purchase.",
    "A payment was taken from my account twice.",
    "My new card has not arrived yet.",
    "When will my new card arrive?",
    "Can I get a refund for this transaction?",
    "How do I request a refund for a purchase?",
    "The app keeps crashing when I open it.",
    "The app crashes every time I launch it.",
    "How do I top up my account with a card?",
    "Can I top up using Apple Pay?",
    "I think someone has stolen my card.",
    "My card was stolen, please block it.",
    "How do I change my home address in the app?",
    "Where can I update my address?",
    "Is there a fee for withdrawing cash from an ATM?",
    "Do you charge for cash withdrawals?",
    "The ATM did not give me my money but my account was debited.",
    "I cannot log in to my account.",
    "I'm locked out of the app after too many attempts.",
    "How do I verify my identity?",
    "Why do you need a photo of my passport?",
    "Can I have more than one currency in my account?",
    "How do I close my account?",
    "I want to cancel my account and withdraw my balance.",
    "My transfer to a friend is still pending.",
    "Why is my transfer still pending after two days?",
    "Do you offer virtual cards for online shopping?",
    "How do I create a disposable virtual card?",
    "My contactless payments are not working.",
    "Contactless is not working on my card.",
    "What are your customer support hours?",
    "How can I contact a human agent?",
    "Is my money protected if the bank fails?",
    "Can I set a spending limit on my card?",
    "How do I freeze my card temporarily?",
    "How do I link my account to Google Pay?",
    "Why was I charged a fee for a card payment?",
    "The exchange rate on my statement looks wrong.",
    "How do I reset my card PIN?",  # an exact duplicate: equal vectors, tied scores
    "Can I order a card for my child?",
]
TOP_K, MAX_PAIRS = 100, 500_000  # the library's defaults


@pytest.fixture(scope="module")
def model(st_model):
    """A copy of the session's bundled model, so setting ``similarity_fn_name`` leaks nowhere."""
    return copy.deepcopy(st_model)


@pytest.fixture(scope="module")
def vectors(model) -> np.ndarray:
    """The raw float32 vectors an encode job gives (batch size 32, as ``paraphrase_mining`` uses); read-only."""
    out = encode(model, TEXTS, batch_size=32)
    out.flags.writeable = False
    return out


Pair = tuple[float, int, int]


def as_pairs(library_pairs: list[list[float | int]]) -> list[Pair]:
    return [(float(s), int(i), int(j)) for s, i, j in library_pairs]


def mined(model, texts: list[str], metric: str, *, top_k: int = TOP_K, max_pairs: int = MAX_PAIRS) -> list[Pair]:
    """What ``util.paraphrase_mining`` returns for the texts, with the metric's score function."""
    score_function = SimilarityFunction.to_similarity_fn(metric)
    pairs = util.paraphrase_mining(model, texts, top_k=top_k, max_pairs=max_pairs, score_function=score_function)
    return as_pairs(pairs)


def ours(
    vectors: np.ndarray,
    metric: str = "cosine",
    *,
    top_k: int = TOP_K,
    max_pairs: int = MAX_PAIRS,
    threshold: float | None = None,
) -> list[Pair]:
    return paraphrases(vectors, top_k=top_k, threshold=threshold, max_pairs=max_pairs, metric=metric)


def assert_same_pairs(got: list[Pair], expected: list[Pair]) -> None:
    """Same pairs, in the same order, scores within 1e-5, as plain Python values."""
    assert [(i, j) for _, i, j in got] == [(i, j) for _, i, j in expected]
    np.testing.assert_allclose([s for s, _, _ in got], [s for s, _, _ in expected], rtol=0, atol=1e-5)
    assert all(type(s) is float and type(i) is int and type(j) is int and i < j for s, i, j in got)


def test_metrics_are_the_librarys() -> None:
    assert list(METRICS) == SimilarityFunction.possible_values()


@pytest.mark.parametrize("metric", METRICS)
def test_similarity_matches_model_similarity(model, vectors: np.ndarray, metric: str) -> None:
    model.similarity_fn_name = metric
    a, b = vectors[:20], vectors[20:]
    ours = similarity(a, b, metric)
    assert ours.dtype == np.float32
    assert ours.shape == (20, len(TEXTS) - 20)
    np.testing.assert_allclose(ours, model.similarity(a, b).numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_similarity_of_one_row(model, vectors: np.ndarray, metric: str) -> None:
    model.similarity_fn_name = metric
    ours = similarity(vectors[:1], vectors, metric)
    assert ours.shape == (1, len(TEXTS))
    np.testing.assert_allclose(ours, model.similarity(vectors[:1], vectors).numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_similarity_pairwise_matches_model(model, vectors: np.ndarray, metric: str) -> None:
    model.similarity_fn_name = metric
    a, b = vectors[0::2], vectors[1::2]
    ours = similarity_pairwise(a, b, metric)
    assert ours.dtype == np.float32
    assert ours.shape == (len(TEXTS) // 2,)
    np.testing.assert_allclose(ours, model.similarity_pairwise(a, b).numpy(), rtol=0, atol=1e-5)


def test_similarity_pairwise_refuses_rows_the_library_would_broadcast(vectors: np.ndarray) -> None:
    with pytest.raises(ValueError, match="as many rows"):
        similarity_pairwise(vectors[:1], vectors[:5], "cosine")


@pytest.mark.parametrize("metric", METRICS)
def test_paraphrases_match_paraphrase_mining(model, vectors: np.ndarray, metric: str) -> None:
    expected = mined(model, TEXTS, metric)
    assert expected  # at least the exact duplicate
    assert_same_pairs(ours(vectors, metric), expected)


def test_exact_duplicates_tie_and_keep_the_librarys_order(model, vectors: np.ndarray) -> None:
    expected = mined(model, TEXTS, "cosine")
    got = ours(vectors)
    assert got[0][1:] == (0, 48)
    scores = [s for s, _, _ in expected]
    assert len(set(scores)) < len(scores), "the duplicate text should tie other pairs' scores"
    assert_same_pairs(got, expected)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_distance_metrics_keep_only_scores_above_minus_one(vectors: np.ndarray, metric: str) -> None:
    """The library starts its cut-off at -1, so far pairs of negative-distance metrics never appear."""
    got = ours(vectors, metric)
    assert got
    assert all(s > -1 for s, _, _ in got)
    assert len(got) < len(TEXTS) * (len(TEXTS) - 1) // 2


def test_threshold_keeps_the_librarys_pairs_at_or_above_it(model, vectors: np.ndarray) -> None:
    expected = [pair for pair in mined(model, TEXTS, "cosine") if pair[0] >= 0.8]
    assert len(expected) >= 3, "the texts should hold several near-duplicates above 0.8"
    got = ours(vectors, threshold=0.8)
    assert_same_pairs(got, expected)
    assert all(s >= 0.8 for s, _, _ in got)


def test_threshold_at_a_pair_score_keeps_that_pair(vectors: np.ndarray) -> None:
    score = ours(vectors)[5][0]
    assert ours(vectors, threshold=score)[-1][0] == score


@pytest.mark.parametrize("metric", METRICS)
def test_small_top_k_matches_the_library(model, vectors: np.ndarray, metric: str) -> None:
    expected = mined(model, TEXTS, metric, top_k=2)
    assert_same_pairs(ours(vectors, metric, top_k=2), expected)
    if metric == "cosine":
        assert len(expected) < len(mined(model, TEXTS, metric))


@pytest.mark.parametrize("max_pairs", [1, 2, 10, 51])
def test_max_pairs_cuts_the_list_like_the_library(model, vectors: np.ndarray, max_pairs: int) -> None:
    expected = mined(model, TEXTS, "cosine", max_pairs=max_pairs)
    assert len(expected) < max_pairs
    assert_same_pairs(ours(vectors, max_pairs=max_pairs), expected)


@pytest.mark.parametrize("metric", METRICS)
def test_one_text_has_no_pairs(model, vectors: np.ndarray, metric: str) -> None:
    assert mined(model, TEXTS[:1], metric) == []
    assert ours(vectors[:1], metric) == []


@pytest.mark.parametrize("metric", ["cos", "dot_product", "", None, 3])
def test_unknown_metric_is_a_bad_request(vectors: np.ndarray, metric: object) -> None:
    with pytest.raises(BadRequest) as info:
        check_metric(metric)
    assert info.value.detail == {"field": "metric"}
    with pytest.raises(BadRequest):
        similarity(vectors, vectors, metric)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        paraphrases(vectors, top_k=1, threshold=None, max_pairs=10, metric=metric)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "options"),
    [
        ("top_k", {"top_k": 0, "threshold": None, "max_pairs": 10}),
        ("top_k", {"top_k": True, "threshold": None, "max_pairs": 10}),
        ("top_k", {"top_k": 2.0, "threshold": None, "max_pairs": 10}),
        ("max_pairs", {"top_k": 1, "threshold": None, "max_pairs": 0}),
        ("threshold", {"top_k": 1, "threshold": float("nan"), "max_pairs": 10}),
        ("threshold", {"top_k": 1, "threshold": "0.8", "max_pairs": 10}),
    ],
)
def test_bad_paraphrase_options_are_bad_requests(field: str, options: dict[str, object]) -> None:
    with pytest.raises(BadRequest) as info:
        check_paraphrase_options(**options)
    assert info.value.detail == {"field": field}


def test_good_paraphrase_options_pass() -> None:
    check_paraphrase_options(top_k=1, threshold=None, max_pairs=1)
    check_paraphrase_options(top_k=100, threshold=-0.5, max_pairs=500_000)
    check_paraphrase_options(top_k=5, threshold=1, max_pairs=2)


@pytest.fixture(scope="module")
def unnormalized(vectors: np.ndarray) -> np.ndarray:
    """Vectors of varied lengths, as a model without a ``Normalize`` module gives (the bundled one normalizes)."""
    return vectors * np.linspace(0.5, 3.0, len(vectors), dtype=np.float32)[:, None]


@pytest.mark.parametrize("metric", METRICS)
def test_vectors_are_not_normalized_first(model, unnormalized: np.ndarray, metric: str) -> None:
    model.similarity_fn_name = metric
    a, b = unnormalized[:25], unnormalized[25:]
    np.testing.assert_allclose(similarity(a, b, metric), model.similarity(a, b).numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        similarity_pairwise(a, b, metric), model.similarity_pairwise(a, b).numpy(), rtol=0, atol=1e-5
    )
    expected = util.paraphrase_mining_embeddings(
        torch.from_numpy(unnormalized.copy()),
        top_k=TOP_K,
        max_pairs=MAX_PAIRS,
        score_function=SimilarityFunction.to_similarity_fn(metric),
    )
    assert_same_pairs(ours(unnormalized, metric), as_pairs(expected))
