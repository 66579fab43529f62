"""``embedq classifiers``, ``train``, ``classify``, ``promote``, ``rollback``, ``classifier`` and ``triage`` against
the session's servers and worker, run in this process through ``main``."""

from __future__ import annotations

import csv
import json
import os
import uuid
from pathlib import Path

import pytest

from embedq.worker.cli import main
from tests import helpers
from tests.integration.test_collections import TICKETS, docs

LABELS = ("activate_my_card", "age_limit", "atm_support")
CARD = "How do I activate my new card?"
AGE = "Is there a minimum age to open an account?"


@pytest.fixture
def cli(eq, worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """``cli(*args)``: ``(exit status, stdout, stderr)`` of ``embedq ARGS`` with the session's settings."""
    for key in os.environ:
        if key.startswith("EMBEDQ_"):
            monkeypatch.delenv(key)
    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def training_csv(path: Path) -> str:
    """10 Banking77 texts of each of ``LABELS``, as a CSV with a byte-order mark (as spreadsheets write it)."""
    rows = [row for label in LABELS for row in [r for r in helpers.banking_labelled() if r[1] == label][:10]]
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def test_train_classify_promote_and_roll_back(eq, cli, tmp_path: Path) -> None:
    classifier = name()
    data = training_csv(tmp_path / "train.csv")
    status, out, err = cli("train", classifier, data, "--method", "logreg", "--eval-split", "0.3", "--param", "C=10")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"classifier {classifier}: version 1 (logreg), active"
    assert lines[1].startswith("held out 9: accuracy ")
    assert "abstention threshold " in lines[2] and "accuracy of the answered" in lines[2]
    table = {line.split()[0]: line.split()[1:] for line in lines[4:]}
    assert set(table) == set(LABELS) and sum(int(cells[-1]) for cells in table.values()) == 9

    status, out, err = cli("classify", classifier, CARD, AGE)
    assert status == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(row[0], row[3]) for row in rows] == [("activate_my_card", CARD), ("age_limit", AGE)]
    expected = eq.classify(classifier, [CARD, AGE]).result(timeout=60)
    assert [float(row[1]) for row in rows] == pytest.approx([p["score"] for p in expected], abs=1e-4)
    assert [row[2] == "abstained" for row in rows] == [p["abstained"] for p in expected]

    status, out, err = cli("train", classifier, data, "--seed", "1", "--eval-split", "0.3", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert (report["version"], report["active"]) == (2, False)
    assert set(report["per_class"]) == set(LABELS) and len(report["confusion"]["matrix"]) == 3

    assert cli("promote", classifier, "2") == (0, f"classifier {classifier}: active version 2 (logreg)\n", "")
    shown = cli("classifier", classifier)[1].splitlines()
    assert shown[0] == f"classifier {classifier}: model all-MiniLM-L6-v2, active version 2, 2 version(s)"
    assert [line.split()[:2] for line in shown[2:]] == [["1", "logreg"], ["2", "*"]]
    assert cli("rollback", classifier)[:2] == (0, f"classifier {classifier}: active version 1 (logreg)\n")
    assert eq.classifier(classifier)["active_version"] == 1

    listed = next(line.split() for line in cli("classifiers")[1].splitlines() if line.startswith(classifier + " "))
    assert listed[1:5] == ["all-MiniLM-L6-v2", "v1", "logreg", "2"]
    predictions = json.loads(cli("classify", classifier, CARD, "--version", "2", "--top-k", "2", "--json")[1])
    assert predictions[0]["label"] == "activate_my_card" and len(predictions[0]["top"]) == 2


def test_a_bad_training_row_exits_2_naming_its_line(eq, cli, tmp_path: Path) -> None:
    classifier = name()
    unquoted = tmp_path / "unquoted.csv"
    unquoted.write_text("text,label\nactivate my card,card\nmy card, it is blocked,card\nage?,age\n")
    status, out, err = cli("train", classifier, str(unquoted))
    assert (status, out) == (2, "")
    assert f"{unquoted} line 3: expected 2 fields (text,label), got 3" in err

    blank_label = tmp_path / "blank.csv"
    blank_label.write_text('text,label\nactivate my card,card\n"a card\nthat is blocked",\nage?,age\n')
    status, _, err = cli("train", classifier, str(blank_label))
    assert status == 2
    assert f"{blank_label} line 3 (label): a label must be 1 to 200 characters" in err
    assert classifier not in [c["name"] for c in eq.classifiers()], "nothing is created for a refused file"


def test_an_unknown_classifier_exits_2_before_queueing(eq, cli, db) -> None:
    missing = name()
    jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    status, out, err = cli("classify", missing, "my card is blocked")
    assert (status, out) == (2, "")
    assert f"UnknownClassifier: unknown classifier '{missing}'" in err and "job " not in err
    status, out, err = cli("triage", missing, "--collection", "tickets", "my card is blocked", "--no-wait")
    assert (status, out) == (2, "")
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs
    status, _, err = cli("classifier", missing)
    assert status == 2 and f"unknown classifier '{missing}'" in err


def test_zero_shot_labels_and_triage(eq, cli, tmp_path: Path) -> None:
    classifier, collection = name(), f"c-{uuid.uuid4().hex[:10]}"
    labels = tmp_path / "labels.csv"
    labels.write_text("label,description\nbilling,wrong charge or refund\nmobile,the app crashes\nbilling,invoice\n")
    status, out, err = cli("classifiers", "create", classifier, "--labels", str(labels))
    assert status == 0, err
    assert (json.loads(out)["active_version"], json.loads(out)["method"]) == (1, "anchors")

    eq.create_collection(collection)
    eq.upsert(collection, docs(TICKETS)).result(timeout=60)
    query = "I was charged twice for the same order"
    status, out, err = cli("triage", classifier, "--collection", collection, query, "-k", "2")
    assert status == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert lines[0] == [f"# {query}"] and lines[1][:2] == ["category", "billing"]
    assert [row[0] for row in lines[2:]] == ["duplicate", "similar"] and lines[2][2] == "T-1"
