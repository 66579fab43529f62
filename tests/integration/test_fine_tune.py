"""Fine-tune jobs: a new registered model version, used at once by encode, collections and classifiers."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from api_client import EmbedQ
from api_client.errors import BadRequest, UnknownModel
from tests import helpers


def pairs_by_label(n: int, classes: int = 4) -> list[list[str]]:
    """``(anchor, positive)`` pairs: two texts of the same intent."""
    rows = helpers.banking_labelled()
    intents = sorted({label for _, label in rows})[:classes]
    by_intent = {intent: [text for text, label in rows if label == intent] for intent in intents}
    pairs = []
    for i in range(n):
        texts = by_intent[intents[i % classes]]
        j = i // classes
        pairs.append([texts[2 * j % len(texts)], texts[(2 * j + 1) % len(texts)]])
    return pairs


def name() -> str:
    return f"ft-{uuid.uuid4().hex[:10]}"


def test_fine_tune_registers_a_model_used_by_encode_collections_and_classifiers(eq: EmbedQ, st_model) -> None:
    model = name()
    scored = [[a, b, 1.0] for a, b in pairs_by_label(8)] + [
        [a, b, 0.0] for (a, _), (b, _) in zip(pairs_by_label(8), pairs_by_label(8)[1:] + pairs_by_label(1), strict=True)
    ]
    result = eq.fine_tune(
        "all-MiniLM-L6-v2",
        pairs_by_label(32),
        loss="mnrl",
        eval_pairs=scored,
        name=model,
        params={"epochs": 1, "batch_size": 8},
    ).result(timeout=300)
    assert result["model"] == model and result["base"] == "all-MiniLM-L6-v2"
    assert result["steps"] == 4
    assert set(result["before"]) >= {"spearman"} and set(result["after"]) >= {"spearman"}
    assert Path(result["artifact_path"]).is_dir() and len(result["fingerprint"]) == 64
    assert model in eq.models()

    texts = helpers.banking_texts(3)
    tuned = eq.encode(texts, model=model, normalize=True).result(timeout=60)
    base = st_model.encode(texts, normalize_embeddings=True)
    assert tuned.shape == base.shape
    assert np.abs(tuned - base).max() > 1e-3  # the weights changed
    assert (tuned * base).sum(axis=1).min() > 0.5  # from the same starting point

    collection = f"c-{uuid.uuid4().hex[:10]}"
    eq.create_collection(collection)
    eq.upsert(collection, [{"id": str(i), "text": t} for i, t in enumerate(texts)]).wait(timeout=60)
    summary = eq.reindex(collection, model=model).result(timeout=120)
    described = eq.collection(collection)
    assert described["model"] == model and described["model_id"] == result["model_id"], summary
    hits = eq.search(collection, [texts[1]], k=1).result(timeout=60)[0]
    assert hits[0]["id"] == "1"

    classifier = f"cl-{uuid.uuid4().hex[:10]}"
    rows = helpers.banking_labelled()[:75]
    report = eq.train_classifier(classifier, [t for t, _ in rows], [label for _, label in rows], model=model).result(
        timeout=120
    )
    assert report["version"] == 1 and eq.classifier(classifier)["model"] == model


def test_cosent_with_matryoshka_dims(eq: EmbedQ) -> None:
    pairs = [[a, b, 1.0] for a, b in pairs_by_label(12)] + [
        [a, b, 0.0]
        for (a, _), (_, b) in zip(pairs_by_label(12, classes=3), pairs_by_label(12, classes=4)[::-1], strict=True)
    ]
    result = eq.fine_tune(
        "all-MiniLM-L6-v2",
        pairs,
        loss="cosent",
        eval_pairs=pairs[:8],
        name=name(),
        matryoshka_dims=[384, 128, 64],
        params={"epochs": 1, "batch_size": 8},
    ).result(timeout=300)
    assert result["loss"] == "cosent" and result["matryoshka_dims"] == [384, 128, 64]
    assert set(result["after_by_dim"]) == {"384", "128", "64"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"pairs": [["only one", "pair"]]}, "at least 2 pairs"),
        ({"pairs": [["a", "b"], ["c"]]}, r"pairs\[1\]"),
        ({"pairs": [["a", "b"], ["c", ""]]}, r"pairs\[1\]\[1\]"),
        ({"loss": "cosent"}, r"pairs\[0\]: cosent takes \[text1, text2, score\]"),
        ({"loss": "cosent", "pairs": [["a", "b", 1.0], ["a", "b", float("nan")]]}, "finite number"),
        ({"loss": "cosent", "pairs": [["a", "b", 1.0]]}, "at least 2 pairs"),
        ({"loss": "triplet"}, "loss"),
        ({"matryoshka_dims": [64, 128]}, "largest first"),
        ({"name": "Bad Name"}, "not a valid name"),
        ({"params": {"lr": 1e-5}}, r"params.lr: not a parameter of mnrl \(allowed: epochs, batch_size, "),
        ({"params": {"epochs": 10**6}}, "params.epochs: Input should be less than or equal to 100"),
        ({"params": {"batch_size": 1}}, "params.batch_size: mnrl needs batches of at least 2"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"matryoshka_dims": [512, 256]}, "matryoshka_dims: 512 is over the model's dimension of 384"),
    ],
)
def test_bad_fine_tune_input_is_refused_before_queueing(eq: EmbedQ, db, change: dict, match: str) -> None:
    request = {"pairs": [["a", "b"], ["c", "d"]], **change}
    jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    with pytest.raises(BadRequest, match=match):
        eq.fine_tune("all-MiniLM-L6-v2", request.pop("pairs"), **request)
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs


def test_an_unknown_base_model_is_refused_before_queueing(eq: EmbedQ, db) -> None:
    jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    with pytest.raises(UnknownModel, match="unknown model 'no-such-model'"):
        eq.fine_tune("no-such-model", [["a", "b"], ["c", "d"]])
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs
