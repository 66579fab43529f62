"""SetFit versions end to end: training, the stored encoder and head, cancel mid-training, a killed worker.

Slow: SetFit fine-tunes the encoder (tiny runs here, still tens of seconds on 2 cores).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

pytestmark = pytest.mark.slow

TINY = {"batch_size": 8, "num_iterations": 2, "max_steps": 6}


def examples(per_class: int = 4, classes: int = 3) -> tuple[list[str], list[str]]:
    rows = helpers.banking_labelled()
    intents = sorted({label for _, label in rows})[:classes]
    texts, labels = [], []
    for intent in intents:
        mine = [text for text, label in rows if label == intent][:per_class]
        texts += mine
        labels += [intent] * len(mine)
    return texts, labels


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def test_setfit_version_trains_stores_its_encoder_and_classifies(eq: EmbedQ, settings) -> None:
    name = f"sf-{uuid.uuid4().hex[:8]}"
    texts, labels = examples()
    report = eq.train_classifier(name, texts, labels, method="setfit", eval_split=0.0, params=TINY).result(timeout=600)
    assert report["method"] == "setfit" and report["version"] == 1 and report["active"] is True
    folder = settings.artifacts / "classifiers" / report_job(eq, name)
    stored = [path.name for path in files_under(folder)]
    assert "head.npz" in stored and "head.json" in stored and "model.safetensors" in stored
    assert not [path for path in stored if path.endswith((".pkl", ".pickle", ".joblib", ".bin"))]

    predictions = eq.classify(name, texts).result(timeout=120)
    assert sum(p["label"] == t for p, t in zip(predictions, labels, strict=True)) >= 0.75 * len(texts)
    version = eq.classifier_versions(name)[0]
    assert version["model_id"] is not None and version["params"]["num_iterations"] == 2


def report_job(eq: EmbedQ, name: str) -> str:
    return str(eq.classifier_versions(name)[0]["job_id"])


def test_cancel_during_setfit_training_stops_it_and_stores_nothing(eq: EmbedQ, settings) -> None:
    name = f"sf-{uuid.uuid4().hex[:8]}"
    texts, labels = examples(per_class=8, classes=4)
    job = eq.train_classifier(
        name, texts, labels, method="setfit", params={"batch_size": 8, "num_iterations": 20, "max_steps": 400}
    )
    helpers.wait_until(lambda: job.progress[0] >= 2, timeout=300, what="two training steps")
    assert job.cancel() == JobStatus.CANCELLED
    helpers.wait_until(
        lambda: not any(files_under(settings.artifacts / "classifiers" / job.id)), timeout=60, what="no files"
    )
    assert eq.classifier(name)["versions"] == 0
    # the worker is free again: a classify job of another classifier answers
    other = f"sf-{uuid.uuid4().hex[:8]}"
    eq.create_classifier(other, labels={"a": "card", "b": "refund"})
    assert eq.classify(other, ["where is my refund"]).result(timeout=120)[0]["label"] == "b"


def test_a_worker_killed_mid_training_leaves_no_partial_artifact(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    env = helpers.worker_env(
        helpers.other_redis_db(broker_url),
        isolated_database,
        EMBEDQ_LEASE_SECONDS="2",
        EMBEDQ_ARTIFACT_ROOT=str(artifacts),
    )
    log = tmp_path / "workers.log"
    first = helpers.start_worker(env, isolated_database, "train-first@%h", log)
    eq = EmbedQ(get_settings(env, env_file=False))
    second = None
    try:
        name = f"sf-{uuid.uuid4().hex[:8]}"
        texts, labels = examples(per_class=6, classes=3)
        job = eq.train_classifier(
            name, texts, labels, method="setfit", params={"batch_size": 8, "num_iterations": 5, "max_steps": 12}
        )
        helpers.wait_until(lambda: job.progress[0] >= 2, timeout=300, what="two training steps")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        folder = artifacts / "classifiers" / job.id
        assert not (folder / "attempt-1").exists()  # only a temporary folder, never a published one

        second = helpers.start_worker(env, isolated_database, "train-second@%h", log)
        info = job.wait(timeout=600)
        assert info.status == JobStatus.SUCCEEDED, log.read_text()[-3000:]
        assert info.attempts == 2
        assert sorted(path.name for path in folder.iterdir()) == ["attempt-2"]  # the dead attempt's temp is gone
        assert eq.classifier_versions(name)[0]["version"] == 1
        assert eq.classify(name, [texts[0]]).result(timeout=120)[0]["label"] in set(labels)
    finally:
        eq.close()
        if second is not None:
            stop_worker(second, timeout=30)
