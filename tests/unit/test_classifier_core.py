"""The classifier core: heads score as scikit-learn does, evaluation values are right, heads load without pickle.

Expected scores and predictions come from scikit-learn fitted directly on the
same real embeddings (the bundled model on Banking77 texts); the threshold and
report values are worked out by hand in the tests.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC

from api_client.errors import ArtifactCorrupt, BadRequest
from embedq.cores.classifiers import (
    DEFAULTS,
    METHODS,
    MIN_EXAMPLES,
    anchor_head,
    choose_threshold,
    eval_split,
    fingerprint,
    fit_head,
    load_head,
    predict,
    report,
    save_head,
)
from tests import helpers

# tests/data/banking77_train_sample.csv keeps the source's order, which groups texts by category:
# these row ranges are the categories of the sample's rows (Banking77 train.csv, rows 1 to 2,000).
CATEGORY_ROWS = {
    "card_arrival": (0, 153),
    "card_linking": (153, 292),
    "exchange_rate": (292, 404),
    "lost_or_stolen_card": (1475, 1557),
    "age_limit": (1557, 1667),
}
PER_LABEL = 24  # 16 to fit, 8 to score
FIT = 16


@pytest.fixture(scope="module")
def data(st_model) -> dict[str, object]:
    """Normalized embeddings of 24 texts of each of 5 categories, split 16 / 8 per category."""
    texts, labels = [], []
    for label, (start, _end) in CATEGORY_ROWS.items():
        texts += helpers.banking_texts(PER_LABEL, offset=start)
        labels += [label] * PER_LABEL
    vectors = st_model.encode(texts, normalize_embeddings=True)
    fit = np.array([i % PER_LABEL < FIT for i in range(len(texts))])
    labels_arr = np.array(labels)
    return {
        "x": vectors[fit],
        "y": labels_arr[fit],
        "x_new": vectors[~fit],
        "y_new": labels_arr[~fit],
        "texts": texts,
    }


def binary(data: dict, key: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """The two first categories only."""
    y = data["y" if key == "x" else "y_new"]
    keep = np.isin(y, ["card_arrival", "card_linking"])
    return data[key][keep], y[keep]


# ---------------------------------------------------------------- heads against scikit-learn


@pytest.mark.parametrize("two_labels", [False, True], ids=["five-labels", "two-labels"])
def test_logreg_scores_are_predict_proba(data, two_labels: bool) -> None:
    x, y = binary(data) if two_labels else (data["x"], data["y"])
    x_new = binary(data, "x_new")[0] if two_labels else data["x_new"]
    head = fit_head("logreg", x, y, seed=0)
    direct = LogisticRegression(C=DEFAULTS["logreg"]["C"], max_iter=1000, random_state=0).fit(x, y)
    assert head.labels == list(direct.classes_)
    # Two lbfgs fits of the same data agree to about 1e-6 relative, not always bit for bit (seen in a full run).
    np.testing.assert_allclose(head.scores(x_new), direct.predict_proba(x_new), rtol=1e-5, atol=1e-8)
    assert head.config["converged"] is True


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("two_labels", [False, True], ids=["five-labels", "two-labels"])
def test_mlp_scores_are_predict_proba(data, two_labels: bool) -> None:
    x, y = binary(data) if two_labels else (data["x"], data["y"])
    x_new = binary(data, "x_new")[0] if two_labels else data["x_new"]
    params = {"hidden_layer_sizes": [32, 16], "alpha": 0.01, "max_iter": 50}
    head = fit_head("mlp", x, y, seed=3, params=params)
    direct = MLPClassifier(hidden_layer_sizes=(32, 16), alpha=0.01, max_iter=50, random_state=3).fit(x, y)
    np.testing.assert_allclose(head.scores(x_new), direct.predict_proba(x_new), rtol=1e-5, atol=1e-7)
    assert head.config["converged"] is False  # 50 iterations are too few: recorded, not raised


@pytest.mark.parametrize("two_labels", [False, True], ids=["five-labels", "two-labels"])
def test_linear_svc_best_score_is_its_prediction(data, two_labels: bool) -> None:
    x, y = binary(data) if two_labels else (data["x"], data["y"])
    x_new = binary(data, "x_new")[0] if two_labels else data["x_new"]
    head = fit_head("linear_svc", x, y, seed=0)
    direct = LinearSVC(C=1.0, max_iter=2000, random_state=0).fit(x, y)
    scores = head.scores(x_new)
    assert [head.labels[i] for i in scores.argmax(axis=1)] == list(direct.predict(x_new))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)


def test_knn_best_score_is_the_similarity_weighted_vote(data) -> None:
    head = fit_head("knn", data["x"], data["y"], params={"k": 7})
    direct = KNeighborsClassifier(
        n_neighbors=7, metric="cosine", algorithm="brute", weights=lambda d: np.clip(1 - d, 1e-6, None)
    ).fit(data["x"], data["y"])
    scores = head.scores(data["x_new"])
    assert [head.labels[i] for i in scores.argmax(axis=1)] == list(direct.predict(data["x_new"]))
    np.testing.assert_allclose(scores, direct.predict_proba(data["x_new"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["logreg", "linear_svc", "knn", "mlp"])
def test_heads_classify_unseen_texts_well(data, method: str) -> None:
    head = fit_head(method, data["x"], data["y"])
    scores = head.scores(data["x_new"])
    assert scores.shape == (len(data["x_new"]), 5)
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    accuracy = np.mean(np.array(head.labels)[scores.argmax(axis=1)] == data["y_new"])
    assert accuracy >= 0.85, accuracy


def test_anchor_head_scores_are_a_softmax_of_cosines(st_model, data) -> None:
    descriptions = {
        "age_limit": ["How old do you have to be to open an account?", "minimum age"],
        "card_arrival": ["my new card has not arrived"],
        "card_linking": ["link a card to my account"],
        "exchange_rate": ["what exchange rate do you use"],
        "lost_or_stolen_card": ["I lost my card or it was stolen"],
    }
    labels = [label for label, texts in descriptions.items() for _ in texts]
    vectors = st_model.encode([t for texts in descriptions.values() for t in texts], normalize_embeddings=True)
    head = anchor_head(vectors, labels, scale=20.0)
    assert head.labels == sorted(descriptions)
    anchors = np.stack([vectors[0] + vectors[1], *vectors[2:]])
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    logits = 20.0 * data["x_new"].astype(np.float64) @ anchors.T
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(head.scores(data["x_new"]), expected, rtol=1e-5)
    accuracy = np.mean(np.array(head.labels)[expected.argmax(axis=1)] == data["y_new"])
    assert accuracy >= 0.6, accuracy


def test_the_same_seed_fits_the_same_head(data) -> None:
    params = {"hidden_layer_sizes": [16], "max_iter": 400}
    first, again = (fit_head("mlp", data["x"], data["y"], seed=5, params=params) for _ in range(2))
    other = fit_head("mlp", data["x"], data["y"], seed=6, params=params)
    assert all(np.array_equal(first.params[k], again.params[k]) for k in first.params)
    assert not np.array_equal(first.params["W0"], other.params["W0"])


def test_fit_head_refuses_what_it_cannot_fit(data) -> None:
    x, y = data["x"], data["y"]
    with pytest.raises(BadRequest, match=r"params.gamma: not a parameter of logreg \(allowed: C, max_iter\)"):
        fit_head("logreg", x, y, params={"gamma": 1})
    with pytest.raises(BadRequest, match="params.k: Input should be greater than or equal to 1"):
        fit_head("knn", x, y, params={"k": 0})
    with pytest.raises(BadRequest, match="params.C: Input should be a finite number"):
        fit_head("logreg", x, y, params={"C": float("nan")})
    with pytest.raises(BadRequest, match="train_setfit"):
        fit_head("setfit", x, y)
    with pytest.raises(BadRequest, match="at least 2 classes"):
        fit_head("knn", x[:3], ["a", "a", "a"])
    with pytest.raises(BadRequest, match=r"'logreg' needs at least 2 examples of each class; .* fewer: 'b'"):
        fit_head("logreg", x[:3], ["a", "a", "b"])
    assert fit_head("knn", x[:3], ["a", "a", "b"]).labels == ["a", "b"]  # knn needs one each
    assert set(MIN_EXAMPLES) == set(METHODS) == set(DEFAULTS)
    assert DEFAULTS["logreg"] == {"C": 10.0, "max_iter": 1000} and DEFAULTS["mlp"]["hidden_layer_sizes"] == [256]


# ---------------------------------------------------------------- save and load, never unpickling


@pytest.mark.parametrize("method", ["logreg", "linear_svc", "knn", "mlp", "anchor"])
def test_a_saved_head_loads_with_the_same_scores(data, tmp_path: Path, method: str) -> None:
    if method == "anchor":
        head = anchor_head(data["x"][::FIT], data["y"][::FIT])
    else:
        head = fit_head(method, data["x"], data["y"], params={"max_iter": 400} if method == "mlp" else None)
    save_head(head, tmp_path / "head")
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["head.json", "head.npz"]
    loaded = load_head(tmp_path / "head")
    assert (loaded.method, loaded.labels, loaded.config) == (head.method, head.labels, head.config)
    np.testing.assert_array_equal(loaded.scores(data["x_new"]), head.scores(data["x_new"]))


class PlantedPickle:
    """Unpickling this creates ``marker`` (through os.system): the file's presence proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def folder(data, tmp_path: Path) -> Path:
    """A folder holding a saved logreg head."""
    save_head(fit_head("logreg", data["x"], data["y"]), tmp_path / "head")
    return tmp_path / "head"


def assert_refused(folder: Path, file: str, marker: Path) -> None:
    """load_head raises ArtifactCorrupt naming ``file``, and nothing was unpickled."""
    with pytest.raises(ArtifactCorrupt) as caught:
        load_head(folder)
    assert caught.value.detail == {"file": file}
    assert not marker.exists()


def test_load_head_never_unpickles_what_lies_in_the_folder(data, folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    (folder / "model_head.pkl").write_bytes(pickle.dumps(PlantedPickle(marker)))

    # The planted file does run code when unpickled, as joblib.load or pickle.load would.
    pickle.loads((folder / "model_head.pkl").read_bytes())
    assert marker.exists()
    marker.unlink()

    head = load_head(folder)
    assert not marker.exists()
    assert head.method == "logreg" and head.scores(data["x_new"]).shape == (len(data["x_new"]), 5)

    (folder / "head.json").unlink()  # only the pickle left: refused, still not unpickled
    assert_refused(folder, "head.json", marker)


def test_load_head_refuses_pickled_arrays_in_the_npz(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    evil = np.empty(1, dtype=object)
    evil[0] = PlantedPickle(marker)
    with (folder / "head.npz").open("wb") as handle:
        np.savez(handle, coef=evil, intercept=evil)
    assert_refused(folder, "head.npz", marker)


def test_load_head_refuses_arrays_that_disagree_with_head_json(folder: Path) -> None:
    meta = json.loads((folder / "head.json").read_text())
    meta["labels"] = meta["labels"][:4]
    (folder / "head.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactCorrupt, match="4 labels"):
        load_head(folder)


# ---------------------------------------------------------------- predict and fingerprint


def test_predict_lists_the_best_labels_and_abstains_below_the_threshold(data) -> None:
    head = fit_head("logreg", data["x"], data["y"])
    scores = head.scores(data["x_new"])
    cut = float(np.median(scores.max(axis=1)))
    results = predict(head, data["x_new"], top_k=3, threshold=cut)
    for row, result in zip(scores, results, strict=True):
        order = np.argsort(-row)[:3]
        assert result["top"] == [[head.labels[j], pytest.approx(row[j])] for j in order]
        assert (result["label"], result["score"]) == (head.labels[order[0]], pytest.approx(row[order[0]]))
        assert result["abstained"] == (row.max() < cut)
    assert sum(r["abstained"] for r in results) == np.sum(scores.max(axis=1) < cut) > 0
    assert all(len(r["top"]) == 5 for r in predict(head, data["x_new"][:2], top_k=99))
    assert not any(r["abstained"] for r in predict(head, data["x_new"]))
    json.dumps(results)


def test_fingerprint_ignores_order_and_sees_every_label() -> None:
    texts, labels = ["a", "b", "c", "b"], ["x", "y", "z", "y"]
    base = fingerprint(texts, labels)
    assert len(base) == 64 and int(base, 16) >= 0
    assert fingerprint(texts[::-1], labels[::-1]) == base
    assert fingerprint(texts, ["x", "y", "x", "y"]) != base
    assert fingerprint(texts[:3], labels[:3]) != base  # a duplicate counts
    assert fingerprint(["a b", "c"], ["x", "y"]) != fingerprint(["a", "b c"], ["x", "y"])


# ---------------------------------------------------------------- the held-out split


def test_eval_split_is_stratified_seed_stable_and_keeps_every_label() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 2 + ["d"]
    train, held = eval_split(labels, 0.2, seed=1)
    assert sorted([*train, *held]) == list(range(18)) and not set(train) & set(held)
    held_labels = [labels[i] for i in held]
    assert {label: held_labels.count(label) for label in "abcd"} == {"a": 2, "b": 1, "c": 0, "d": 0}
    assert {labels[i] for i in train} == set("abcd")

    again = eval_split(labels, 0.2, seed=1)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], held)
    assert any(not np.array_equal(eval_split(labels, 0.2, seed=s)[1], held) for s in range(2, 6))

    # Another label added at the end leaves the others' draw alone.
    assert np.array_equal(eval_split([*labels, "e", "e", "e"], 0.2, seed=1)[1][:3], held)
    # Half to eval, but min_train 2 stays in train: b (5) sends 3, c (2) none.
    held_labels = [labels[i] for i in eval_split(labels, 0.5, seed=1, min_train=2)[1]]
    assert {label: held_labels.count(label) for label in "abcd"} == {"a": 5, "b": 3, "c": 0, "d": 0}
    assert len(eval_split(labels, 0, seed=1)[1]) == 0
    with pytest.raises(BadRequest, match="eval_split"):
        eval_split(labels, 1.0, seed=1)


# ---------------------------------------------------------------- the threshold

CONF = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
RIGHT = np.array([1, 1, 1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
# answered accuracy at each cut, from the top: 1, 1, 1, .75, .8, .833, .714, .625, .667, .6


def test_default_threshold_still_answers_95_percent() -> None:
    chosen = choose_threshold(CONF, RIGHT)
    assert chosen == {
        "threshold": 0.05,
        "coverage": 1.0,
        "answered_accuracy": 0.6,
        "rule": "min_answered",
        "target": 0.95,
        "met": True,
    }


def test_min_answered_takes_the_highest_threshold_answering_enough() -> None:
    chosen = choose_threshold(CONF, RIGHT, min_answered=0.5)
    assert (chosen["threshold"], chosen["coverage"], chosen["answered_accuracy"]) == (0.5, 0.5, 0.8)
    # Ties: a threshold answers every example at that confidence.
    tied = choose_threshold([0.9, 0.9, 0.5], [True, False, True], min_answered=0.3)
    assert (tied["threshold"], tied["coverage"]) == (0.9, pytest.approx(2 / 3))


def test_target_precision_takes_the_lowest_threshold_reaching_it() -> None:
    chosen = choose_threshold(CONF, RIGHT, target_precision=0.8)
    assert (chosen["threshold"], chosen["coverage"]) == (0.4, 0.6)
    assert chosen["answered_accuracy"] == pytest.approx(5 / 6)
    assert chosen["met"] is True
    exact = choose_threshold(CONF, RIGHT, target_precision=1.0)
    assert (exact["threshold"], exact["coverage"], exact["answered_accuracy"]) == (0.7, 0.3, 1.0)


def test_an_unreachable_target_returns_the_best_precision_and_says_so() -> None:
    chosen = choose_threshold([0.9, 0.8, 0.7, 0.6], [False, True, False, True], target_precision=0.9)
    # accuracies from the top: 0, .5, .333, .5: the best (.5) with the most answered
    assert chosen == {
        "threshold": 0.6,
        "coverage": 1.0,
        "answered_accuracy": 0.5,
        "rule": "target_precision",
        "target": 0.9,
        "met": False,
    }


def test_threshold_without_eval_data_and_bad_options() -> None:
    empty = choose_threshold(np.zeros(0), np.zeros(0, dtype=bool))
    assert (empty["threshold"], empty["coverage"], empty["rule"]) == (0.0, None, "no_eval")
    with pytest.raises(BadRequest, match="not both"):
        choose_threshold(CONF, RIGHT, min_answered=0.9, target_precision=0.9)
    with pytest.raises(BadRequest, match="target_precision"):
        choose_threshold(CONF, RIGHT, target_precision=1.5)
    with pytest.raises(BadRequest, match="correct"):
        choose_threshold(CONF, RIGHT[:3])


# ---------------------------------------------------------------- the report


def test_report_values_worked_out_by_hand() -> None:
    true = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "a"]
    confidence = np.array([0.9, 0.4, 0.8, 0.7, 0.6])
    result = report(true, predicted, confidence, ["a", "b", "c", "d"], {"threshold": 0.65, "rule": "min_answered"})
    json.dumps(result)
    assert result["n_eval"] == 5
    assert result["accuracy"] == pytest.approx(3 / 5)
    # F1: a = 0.5 (p 1/2, r 1/2), b = 0.8 (p 2/3, r 1), c = 0; d is in neither list so not in the mean.
    assert result["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert result["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert result["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["per_class"]["d"]["support"] == 0
    assert result["confusion"] == {
        "labels": ["a", "b", "c", "d"],
        "matrix": [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
    }
    # Answered at 0.65: the examples at 0.9, 0.8, 0.7, all right.
    assert (result["threshold"], result["coverage"], result["answered_accuracy"]) == (0.65, 0.6, 1.0)
    assert result["threshold_rule"] == {"rule": "min_answered", "target": None, "met": None}


def test_report_of_a_real_head_on_held_out_texts(data) -> None:
    head = fit_head("logreg", data["x"], data["y"])
    scores = head.scores(data["x_new"])
    predicted = [head.labels[i] for i in scores.argmax(axis=1)]
    confidence = scores.max(axis=1)
    chosen = choose_threshold(confidence, np.array(predicted) == data["y_new"], min_answered=0.8)
    result = report(list(data["y_new"]), predicted, confidence, head.labels, chosen)
    assert result["coverage"] == chosen["coverage"] >= 0.8
    assert result["answered_accuracy"] == pytest.approx(chosen["answered_accuracy"])
    abstained = predict(head, data["x_new"], threshold=chosen["threshold"])
    assert np.mean([not r["abstained"] for r in abstained]) == pytest.approx(result["coverage"])
    assert sum(map(sum, result["confusion"]["matrix"])) == result["n_eval"] == 40
