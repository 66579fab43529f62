"""Classifiers end to end: zero-shot anchors, trained heads, versions, abstention, safe artifacts, triage.

The session worker runs every job with the real bundled model; the training
data is real support-desk text (tests/data/banking77_labelled_sample.csv).
"""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest

from api_client import EmbedQ
from api_client.errors import ArtifactCorrupt, BadRequest, UnknownClassifier, UnknownCollection, UnknownModel
from tests import helpers

LABELS = {
    "billing": "wrong charge, invoice, refund, billed twice",
    "bug": "crash, error, broken, the app does not work",
    "account": "password reset, login, account locked",
}


def name() -> str:
    return f"cl-{uuid.uuid4().hex[:10]}"


def labelled(per_class: int = 25, classes: int = 8, offset: int = 0) -> tuple[list[str], list[str]]:
    """``per_class`` texts of each of the first ``classes`` intents (from ``offset`` within each intent)."""
    rows = helpers.banking_labelled()
    intents = sorted({label for _, label in rows})[:classes]
    texts, labels = [], []
    for intent in intents:
        mine = [text for text, label in rows if label == intent][offset : offset + per_class]
        texts += mine
        labels += [intent] * len(mine)
    return texts, labels


def test_zero_shot_from_label_descriptions(eq: EmbedQ, st_model) -> None:
    classifier = name()
    info = eq.create_classifier(classifier, model="all-MiniLM-L6-v2", labels=LABELS)
    assert info["active_version"] == 1 and info["method"] == "anchors"
    texts = ["I was billed twice for my order", "the app crashes on start", "I forgot my password"]
    predictions = eq.classify(classifier, texts, top_k=3).result(timeout=60)

    anchors = st_model.encode(list(LABELS.values()), normalize_embeddings=True)
    expected = (st_model.encode(texts, normalize_embeddings=True) @ anchors.T).argmax(axis=1)
    assert [p["label"] for p in predictions] == [list(LABELS)[i] for i in expected]
    assert [p["label"] for p in predictions] == ["billing", "bug", "account"]
    for prediction in predictions:
        assert len(prediction["top"]) == 3 and isinstance(prediction["top"][0], tuple)
        assert prediction["top"][0] == (prediction["label"], prediction["score"])
        assert [score for _, score in prediction["top"]] == sorted((s for _, s in prediction["top"]), reverse=True)
        assert prediction["abstained"] is False


def test_logreg_trains_reports_and_classifies(eq: EmbedQ, st_model) -> None:
    from sklearn.linear_model import LogisticRegression

    classifier = name()
    texts, labels = labelled()
    report = eq.train_classifier(classifier, texts, labels, method="logreg", eval_split=0.2).result(timeout=120)
    assert report["version"] == 1 and report["active"] is True
    assert report["n_eval"] == 40 and report["accuracy"] > 0.8
    assert set(report["per_class"]) == set(labels)
    assert np.array(report["confusion"]["matrix"]).sum() == 40
    assert report["coverage"] >= 0.95 and report["threshold"] is not None

    fresh, truth = labelled(per_class=5, offset=25 - 5)  # the last examples of each intent
    predictions = eq.classify(classifier, fresh).result(timeout=60)
    assert sum(p["label"] == t for p, t in zip(predictions, truth, strict=True)) >= 0.7 * len(truth)
    for prediction in predictions:
        assert prediction["abstained"] == (prediction["score"] < report["threshold"])

    # the same model fitted directly on the library's embeddings of the whole set agrees on most texts
    direct = LogisticRegression(C=report["params"]["C"], max_iter=1000).fit(
        st_model.encode(texts, normalize_embeddings=True), labels
    )
    agree = np.mean(
        direct.predict(st_model.encode(fresh, normalize_embeddings=True)) == [p["label"] for p in predictions]
    )
    assert agree >= 0.9


@pytest.mark.parametrize("method", ["linear_svc", "knn", "mlp"])
def test_each_head_method_trains_and_classifies(eq: EmbedQ, method: str) -> None:
    classifier = name()
    texts, labels = labelled(per_class=12, classes=4)
    report = eq.train_classifier(classifier, texts, labels, method=method, eval_split=0.25).result(timeout=120)
    assert report["method"] == method and report["accuracy"] >= 0.6
    versions = eq.classifier_versions(classifier)
    assert versions[0]["method"] == method and versions[0]["fingerprint"]
    prediction = eq.classify(classifier, [texts[0]]).result(timeout=60)[0]
    assert prediction["label"] in set(labels)


def test_a_retrain_on_the_same_texts_runs_no_forward_pass(eq: EmbedQ) -> None:
    classifier = name()
    texts, labels = labelled(per_class=6, classes=3)
    first = eq.train_classifier(classifier, texts, labels, method="logreg").result(timeout=120)
    second = eq.train_classifier(classifier, texts, labels, method="knn").result(timeout=120)
    assert second["encoded"] == 0 and second["cached"] == len(set(texts))
    assert first["version"] == 1 and second["version"] == 2


def test_versions_promotion_auto_promotion_and_rollback(eq: EmbedQ) -> None:
    classifier = name()
    texts, labels = labelled(per_class=10, classes=4)
    shuffled = list(np.random.default_rng(0).permutation(labels))
    v1 = eq.train_classifier(classifier, texts, shuffled, method="logreg").result(timeout=120)
    v2 = eq.train_classifier(classifier, texts, labels, method="logreg").result(timeout=120)
    assert (v1["active"], v2["active"]) == (True, False)
    assert eq.classifier(classifier)["active_version"] == 1
    assert eq.classify(classifier, [texts[0]]).wait(timeout=60).result["version"] == 1
    assert eq.classify(classifier, [texts[0]], version=2).wait(timeout=60).result["version"] == 2

    assert eq.promote_classifier(classifier, version=2)["active_version"] == 2
    assert eq.classify(classifier, [texts[0]]).wait(timeout=60).result["version"] == 2  # no restart needed
    assert eq.rollback_classifier(classifier)["active_version"] == 1

    better = eq.train_classifier(classifier, texts, labels, method="logreg", auto_promote=True).result(timeout=120)
    assert better["active"] is True and better["compared_with"]["version"] == 1
    worse = eq.train_classifier(classifier, texts, shuffled, method="logreg", auto_promote=True).result(timeout=120)
    assert worse["active"] is False
    versions = eq.classifier_versions(classifier)
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    assert [v["active"] for v in versions] == [False, False, True, False]
    assert versions[3]["parent_version"] == 3
    assert versions[0]["fingerprint"] != versions[1]["fingerprint"]
    with pytest.raises(UnknownClassifier, match="no version 9"):
        eq.promote_classifier(classifier, version=9)


def test_abstention_targets(eq: EmbedQ) -> None:
    classifier = name()
    texts, labels = labelled(per_class=20, classes=8)
    default = eq.train_classifier(classifier, texts, labels, eval_split=0.3).result(timeout=120)
    strict = eq.train_classifier(classifier, texts, labels, eval_split=0.3, target_precision=0.99).result(timeout=120)
    half = eq.train_classifier(classifier, texts, labels, eval_split=0.3, min_answered=0.5).result(timeout=120)
    assert default["coverage"] >= 0.95 and default["threshold_rule"]["rule"] == "min_answered"
    assert 0.5 <= half["coverage"] < default["coverage"] and half["threshold"] > default["threshold"]
    # the precision target keeps as many answers as reach it
    assert strict["threshold_rule"] == {"rule": "target_precision", "target": 0.99, "met": True}
    assert strict["answered_accuracy"] >= 0.99 and strict["coverage"] >= half["coverage"]
    strict_version = eq.classifier_versions(classifier)[1]
    assert strict_version["threshold"] == strict["threshold"]


def test_a_planted_pickle_is_never_loaded(eq: EmbedQ, tmp_path: Path) -> None:
    classifier = name()
    texts, labels = labelled(per_class=6, classes=3)
    eq.train_classifier(classifier, texts, labels).result(timeout=120)
    folder = Path(eq.classifier_versions(classifier)[0]["params"].get("artifact_path") or _artifact(eq, classifier))
    marker = tmp_path / "unpickled"
    (folder / "model_head.pkl").write_bytes(pickle.dumps(_Planted(str(marker))))
    with pytest.raises(ArtifactCorrupt, match="model_head.pkl"):
        eq.classify(classifier, ["where is my card"]).result(timeout=60)
    assert not marker.exists()


class _Planted:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _artifact(eq: EmbedQ, classifier: str) -> str:
    return eq._run(
        lambda conn: conn.execute(
            "SELECT v.artifact_path FROM classifier_versions v JOIN classifiers c ON c.id = v.classifier_id "
            "WHERE c.name = %s",
            (classifier,),
        ).fetchone()[0]
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"labels": ["a"] * 6}, "at least 2 classes"),
        ({"labels": ["a", "b", "a", "b", "a"]}, "5 labels for 6 texts"),
        ({"labels": ["a", "a", "a", "a", "a", "b"]}, "at least 2 examples of each class"),
        ({"texts": ["ok", "", "ok", "ok", "ok", "ok"]}, r"texts\[1\]"),
        ({"texts": ["ok", 3, "ok", "ok", "ok", "ok"]}, r"texts\[1\]: expected a string"),
        ({"method": "forest"}, "method"),
        ({"name": "Not A Slug"}, "not a valid name"),
        ({"model": "no-such-model"}, "unknown model 'no-such-model'"),
        ({"min_answered": 0.9, "target_precision": 0.9}, "not both"),
    ],
)
def test_bad_training_input_is_refused_before_queueing(eq: EmbedQ, db, change: dict, match: str) -> None:
    request = {
        "name": name(),
        "texts": ["t1", "t2", "t3", "t4", "t5", "t6"],
        "labels": ["a", "b", "a", "b", "a", "b"],
        **change,
    }
    jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    with pytest.raises((BadRequest, UnknownModel), match=match):
        eq.train_classifier(request.pop("name"), request.pop("texts"), request.pop("labels"), **request)
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs


def test_classify_an_unknown_classifier_is_refused_before_queueing(eq: EmbedQ, db) -> None:
    jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    with pytest.raises(UnknownClassifier, match="unknown classifier 'no-such-classifier'"):
        eq.classify("no-such-classifier", ["hello"])
    empty = name()
    eq.create_classifier(empty)
    with pytest.raises(UnknownClassifier, match="no version yet"):
        eq.classify(empty, ["hello"])
    zero_shot = name()
    eq.create_classifier(zero_shot, labels=LABELS)
    with pytest.raises(UnknownClassifier, match=r"no version 9 \(versions: 1\)"):
        eq.classify(zero_shot, ["hello"], version=9)
    with pytest.raises(UnknownClassifier, match="unknown classifier 'no-such-classifier'"):
        eq.triage("no-such-classifier", collection=_collection(eq), texts=["hello"])
    with pytest.raises(UnknownCollection, match="no-such-collection"):
        eq.triage(zero_shot, collection="no-such-collection", texts=["hello"])
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs


def _collection(eq: EmbedQ) -> str:
    collection = name()
    eq.create_collection(collection)
    return collection


@pytest.mark.parametrize(
    ("method", "params", "match"),
    [
        ("logreg", {"gamma": 1}, r"params.gamma: not a parameter of logreg \(allowed: C, max_iter\)"),
        ("logreg", {"C": -1.0}, "params.C: Input should be greater than 0"),
        ("logreg", {"max_iter": 2.5}, "params.max_iter: Input should be a valid integer"),
        ("knn", {"k": 10_000}, "params.k: Input should be less than or equal to 1000"),
        ("mlp", {"hidden_layer_sizes": [64, 10**6]}, r"params.hidden_layer_sizes.1: .*less than or equal to 4096"),
        ("mlp", {"hidden_layer_sizes": []}, "params.hidden_layer_sizes: List should have at least 1 item"),
        ("setfit", {"num_epochs": 10**4}, "params.num_epochs: Input should be less than or equal to 100"),
        ("setfit", {"seed": 3}, "pass the seed as its own argument"),
        ("linear_svc", "C=10", "params: expected a JSON object"),
    ],
)
def test_bad_params_are_refused_before_queueing(eq: EmbedQ, db, method: str, params, match: str) -> None:
    classifier = name()
    texts, labels = labelled(per_class=4, classes=2)
    jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    with pytest.raises(BadRequest, match=match) as caught:
        eq.train_classifier(classifier, texts, labels, method=method, params=params)
    assert caught.value.detail["field"] == "params"
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs
    assert classifier not in [c["name"] for c in eq.classifiers()], "nothing is created for a refused request"


def test_params_are_recorded_with_their_defaults(eq: EmbedQ, db) -> None:
    classifier = name()
    texts, labels = labelled(per_class=6, classes=3)
    report = eq.train_classifier(classifier, texts, labels, method="mlp", params={"hidden_layer_sizes": [32]})
    params = report.result(timeout=120)["params"]
    assert params == {"hidden_layer_sizes": [32], "alpha": 0.01, "max_iter": 300, "seed": 0}
    assert eq.classifier_versions(classifier)[0]["params"] == params
    stored = db.execute("SELECT request->'params' FROM jobs WHERE id = %s", (report.id,)).fetchone()[0]
    assert stored == {"hidden_layer_sizes": [32], "alpha": 0.01, "max_iter": 300}


def test_a_plain_celery_client_trains_a_new_classifier(eq: EmbedQ, db, broker_url: str) -> None:
    """Without our client nothing creates the classifier first: the version's transaction does."""
    from celery import Celery

    classifier = name()
    texts, labels = labelled(per_class=4, classes=3)
    app = Celery(broker=broker_url)
    task_id = str(uuid.uuid4())
    app.send_task(
        "embedq.train_classifier",
        kwargs={"request": {"name": classifier, "texts": texts, "labels": labels, "method": "knn"}},
        task_id=task_id,
    )
    app.close()
    helpers.wait_until(
        lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s AND status = 'succeeded'", (task_id,)).fetchone(),
        what="the train_classifier job",
    )
    info = eq.classifier(classifier)
    assert (info["model"], info["active_version"], info["method"]) == ("all-MiniLM-L6-v2", 1, "knn")


@pytest.mark.parametrize(
    ("task", "request_", "error", "match"),
    [
        ("embedq.classify", {"name": "no-such-classifier", "texts": ["hi"]}, "UnknownClassifier", "unknown classifier"),
        (
            "embedq.train_classifier",
            {"name": "t", "texts": ["a", "b", "c", "d"], "labels": ["x", "y", "x", "y"], "params": {"gamma": 1}},
            "BadRequest",
            "params.gamma: not a parameter of logreg",
        ),
        (
            "embedq.fine_tune",
            {"model": "all-MiniLM-L6-v2", "pairs": [["a", "b"], ["c", "d"]], "params": {"epochs": 0}},
            "BadRequest",
            "params.epochs: Input should be greater than or equal to 1",
        ),
        (
            "embedq.fine_tune",
            {"model": "no-such-model", "pairs": [["a", "b"], ["c", "d"]]},
            "UnknownModel",
            "unknown model 'no-such-model'",
        ),
    ],
)
def test_a_plain_celery_message_is_refused_with_the_clients_error(
    eq: EmbedQ, db, broker_url: str, task: str, request_: dict, error: str, match: str
) -> None:
    """The worker's inline path runs the same parser, with the catalog: a failed row, no run."""
    from celery import Celery

    app = Celery(broker=broker_url)
    task_id = str(uuid.uuid4())
    app.send_task(task, kwargs={"request": request_}, task_id=task_id)
    app.close()
    row = helpers.wait_until(
        lambda: db.execute("SELECT status, error, attempts FROM jobs WHERE id = %s", (task_id,)).fetchone(),
        what=f"the {task} job",
    )
    status, recorded, attempts = row
    assert (status, recorded["type"], attempts) == ("failed", error, 0)
    assert match in recorded["message"]


def test_triage_gives_category_similar_tickets_and_duplicates(eq: EmbedQ) -> None:
    classifier, collection = name(), name()
    eq.create_classifier(classifier, labels=LABELS)
    eq.create_collection(collection)
    past = [
        {"id": "T-1", "text": "my card was charged twice"},
        {"id": "T-2", "text": "the app crashes when I log in"},
        {"id": "T-3", "text": "how do I reset my password"},
    ]
    eq.upsert(collection, past).wait(timeout=60)
    records = eq.triage(classifier, collection=collection, texts=["my card was charged twice"], k=2).result(timeout=60)
    assert len(records) == 1
    record = records[0]
    assert record["category"]["label"] == "billing"
    assert record["similar"][0]["id"] == "T-1" and len(record["similar"]) == 2
    assert [hit["id"] for hit in record["duplicates"]] == ["T-1"]


def test_plain_celery_client_classifies_with_json_alone(eq: EmbedQ, db, broker_url: str) -> None:
    from celery import Celery

    classifier = name()
    eq.create_classifier(classifier, labels=LABELS)
    app = Celery(broker=broker_url)
    task_id = str(uuid.uuid4())
    app.send_task(
        "embedq.classify",
        kwargs={"request": {"name": classifier, "texts": ["the app crashes"]}},
        queue="embedq.cpu.interactive",
        task_id=task_id,
    )
    app.close()
    helpers.wait_until(
        lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s AND status = 'succeeded'", (task_id,)).fetchone(),
        what="the classify job",
    )
    output = db.execute("SELECT output FROM item_results WHERE job_id = %s", (task_id,)).fetchone()[0]
    assert output["label"] == "bug"
