"""The classifier and fine-tuning commands without a service: reading their files, naming bad rows by line,
turning options into the request the schemas accept, and printing results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api_client.errors import BadRequest
from api_client.kinds.classifiers import TrainRequest
from api_client.kinds.fine_tune import FineTuneRequest
from api_client.requests import Limits
from embedq.worker.cli import build_parser, main
from embedq.worker.cli.classifier_files import (
    by_record_line,
    parse_params,
    read_label_descriptions,
    read_labelled,
    read_pairs,
)
from embedq.worker.cli.classifier_views import prediction_lines, report_lines, triage_lines
from embedq.worker.cli.common import UsageError
from embedq.worker.cli.fine_tuning import fine_tune_request


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_a_csv_with_bom_quotes_and_blank_lines_keeps_each_rows_first_line(tmp_path: Path) -> None:
    data = '\ufefftext,label\r\n"charged twice, please refund",billing\r\n\r\n"app\ncrashes",bug\nlogin fails,bug\n'
    texts, labels, records = read_labelled(write(tmp_path / "d.csv", data))
    assert texts == ["charged twice, please refund", "app\ncrashes", "login fails"]
    assert labels == ["billing", "bug", "bug"]
    assert records.lines == [2, 4, 6]


def test_columns_are_found_by_the_header_in_any_order(tmp_path: Path) -> None:
    texts, labels, _ = read_labelled(write(tmp_path / "d.csv", "id,Label,Text\n1,billing,refund me\n"))
    assert (texts, labels) == (["refund me"], ["billing"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "text,label\nok,billing\ncharged twice, again,billing\n",
            "line 3: expected 2 fields (text,label), got 3",
        ),
        ("text,category\nok,billing\n", "line 1: the header must name the columns text,label"),
        (b"text,label\nok,billing\nbad \xff,bug\n", "line 3: not valid UTF-8"),
    ],
)
def test_a_bad_row_is_named_by_its_line(tmp_path: Path, data: str | bytes, message: str) -> None:
    path = write(tmp_path / "d.csv", data)
    with pytest.raises(BadRequest) as caught:
        read_labelled(path)
    assert caught.value.message.startswith(f"{path} {message}")


def test_a_file_without_rows_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no rows after the header"):
        read_labelled(write(tmp_path / "d.csv", "text,label\n\n"))


def test_json_lines_are_read_for_a_jsonl_file(tmp_path: Path) -> None:
    rows = [{"text": "refund me", "label": "billing", "id": 1}, {"text": "crash", "label": "bug"}]
    path = write(tmp_path / "d.jsonl", json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    texts, labels, records = read_labelled(path)
    assert (texts, labels, records.lines) == (["refund me", "crash"], ["billing", "bug"], [1, 3])
    with pytest.raises(BadRequest, match=r"d2.jsonl line 2: expected a JSON object .*missing label"):
        read_labelled(write(tmp_path / "d2.jsonl", json.dumps(rows[0]) + '\n{"text": "x"}\n'))


def test_a_value_the_schema_refuses_is_named_by_its_file_line(tmp_path: Path) -> None:
    texts, labels, records = read_labelled(write(tmp_path / "d.csv", "text,label\na,x\nb,x\n\n  ,y\nd,y\n"))
    with pytest.raises(BadRequest) as caught:
        TrainRequest.parse({"name": "t", "texts": texts, "labels": labels}, Limits())
    error = by_record_line(caught.value, {"texts": records, "labels": records})
    assert error.message == f"{tmp_path / 'd.csv'} line 5 (text): the text is empty or only whitespace"
    assert error.detail["line"] == 5


def test_params_are_json_when_they_parse() -> None:
    assert parse_params(["C=10", "hidden=[64, 32]", "solver=lbfgs"]) == {"C": 10, "hidden": [64, 32], "solver": "lbfgs"}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_params(["C"])


def test_setfit_options_reach_the_request(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["train", "t", "d.csv", "--method", "setfit", "--param", "num_iterations=5", "--min-answered", "0.9"]
    )
    assert (args.method, parse_params(args.param), args.min_answered) == ("setfit", {"num_iterations": 5}, 0.9)
    assert args.target_precision is None and not args.auto_promote


def test_label_descriptions_from_csv_or_json(tmp_path: Path) -> None:
    csv_labels = "label,description\nbilling,wrong charge\nbug,crash\nbilling,refund\n"
    assert read_label_descriptions(write(tmp_path / "l.csv", csv_labels)) == {
        "billing": ["wrong charge", "refund"],
        "bug": "crash",
    }
    described = {"billing": "wrong charge", "bug": ["crash", "error"]}
    assert read_label_descriptions(write(tmp_path / "l.json", json.dumps(described))) == described


def test_fine_tune_options_make_a_request_the_schema_accepts(tmp_path: Path) -> None:
    pairs = write(tmp_path / "p.csv", "anchor,positive\nrefund please,money back\ncard lost,card missing\n")
    scored = write(tmp_path / "s.csv", "text1,text2,score\nrefund,money back,0.9\ncard,weather,0.1\n")
    args = build_parser().parse_args(
        [
            *("fine-tune", "all-MiniLM-L6-v2", pairs, "--name", "support-minilm", "--eval-pairs", scored),
            *("--matryoshka-dims", "384,256", "--epochs", "2", "--learning-rate", "3e-5", "--seed", "7"),
        ]
    )
    request, files = fine_tune_request(args)
    assert request["params"] == {"epochs": 2, "learning_rate": 3e-5}
    assert request["eval_pairs"] == [["refund", "money back", 0.9], ["card", "weather", 0.1]]
    assert files["eval_pairs"].lines == [2, 3]
    parsed = FineTuneRequest.parse({"model": args.model, **request}, Limits())
    assert (parsed.name, parsed.matryoshka_dims, parsed.seed, parsed.loss) == ("support-minilm", [384, 256], 7, "mnrl")
    assert parsed.pairs == [["refund please", "money back"], ["card lost", "card missing"]]


def test_fine_tune_refuses_a_file_of_the_other_loss_and_a_bad_score(tmp_path: Path) -> None:
    scored = write(tmp_path / "s.csv", "text1,text2,score\nrefund,money back,high\n")
    args = build_parser().parse_args(["fine-tune", "all-MiniLM-L6-v2", scored])
    with pytest.raises(UsageError, match="--loss mnrl reads a header anchor,positive"):
        fine_tune_request(args)
    with pytest.raises(BadRequest, match="s.csv line 2: score: 'high' is not a number"):
        read_pairs(scored, "cosent")
    good = write(tmp_path / "g.csv", "text1,text2,score\nrefund,money back,0.9\n")
    with pytest.raises(UsageError, match="--matryoshka-dims '384,x': expected whole numbers"):
        fine_tune_request(
            build_parser().parse_args(["fine-tune", "m", good, "--loss", "cosent", "--matryoshka-dims", "384,x"])
        )


def test_a_pair_the_schema_refuses_is_named_by_its_line(tmp_path: Path) -> None:
    pairs, records = read_pairs(write(tmp_path / "p.csv", "anchor,positive\na,b\n\nc, \n"), "mnrl")
    with pytest.raises(BadRequest) as caught:
        FineTuneRequest.parse({"model": "all-MiniLM-L6-v2", "pairs": pairs}, Limits())
    assert by_record_line(caught.value, {"pairs": records}).message.startswith(f"{records.where} line 4: ")


def test_the_report_prints_its_figures_and_per_class_table() -> None:
    report = {
        "classifier": "triage",
        "version": 2,
        "active": False,
        "method": "logreg",
        "n_eval": 6,
        "accuracy": 5 / 6,
        "macro_f1": 0.8,
        "threshold": 0.41234,
        "coverage": 0.5,
        "answered_accuracy": 1.0,
        "per_class": {
            "billing": {"precision": 1.0, "recall": 0.75, "f1": 0.857, "support": 4},
            "bug": {"precision": 0.5, "recall": 1.0, "f1": 0.667, "support": 2},
        },
    }
    lines = report_lines(report)
    assert lines[0] == "classifier triage: version 2 (logreg), not active (`embedq promote` makes it active)"
    assert lines[1] == "held out 6: accuracy 0.833, macro-F1 0.800"
    assert "threshold 0.4123: answers 50.0% of the held-out examples, accuracy of the answered 1.000" in lines[2]
    assert [line.split() for line in lines[3:]] == [
        ["label", "precision", "recall", "f1", "support"],
        ["billing", "1.000", "0.750", "0.857", "4"],
        ["bug", "0.500", "1.000", "0.667", "2"],
    ]
    no_split = report_lines({**report, "n_eval": 0, "active": True})
    assert no_split[0].endswith(", active") and "no held-out examples" in no_split[1]


def test_predictions_print_one_line_per_text() -> None:
    p = [
        {"label": "billing", "score": 0.91, "top": [("billing", 0.91), ("bug", 0.05)], "abstained": False},
        {"label": "bug", "score": 0.3, "top": [("bug", 0.3), ("billing", 0.2)], "abstained": True},
    ]
    assert prediction_lines(["charged\ttwice", "odd\nthing"], p, top=False) == [
        "billing\t0.9100\t-\tcharged twice",
        "bug\t0.3000\tabstained\todd thing",
    ]
    assert prediction_lines(["x", "y"], p, top=True)[0] == "billing\t0.9100\t-\tbilling 0.9100, bug 0.0500\tx"
    hits = [{"id": "T-1", "score": 0.95, "text": "card charged twice"}, {"id": "T-2", "score": 0.5, "text": "late"}]
    record = {"category": p[0], "similar": hits, "duplicates": hits[:1]}
    assert triage_lines(["a", "b"], [record, record], top=False)[:4] == [
        "# a",
        "category\tbilling\t0.9100\t-",
        "duplicate\t0.9500\tT-1\tcard charged twice",
        "similar\t0.5000\tT-2\tlate",
    ]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["classifiers"], "threshold"),
        (["classifiers", "create"], "label,description"),
        (["classifier"], "--json"),
        (["train"], "text,label"),
        (["classify"], "abstained"),
        (["promote"], "VERSION"),
        (["rollback"], "before the current one"),
        (["triage"], "--duplicate-threshold"),
        (["fine-tune"], "text1,text2,score"),
    ],
)
def test_every_classifier_command_has_help(command: list[str], expected: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    assert expected in capsys.readouterr().out


def test_texts_come_from_arguments_or_a_file_not_both(capsys: pytest.CaptureFixture) -> None:
    assert main(["classify", "triage"]) == 2
    assert "give the texts as arguments or with --file" in capsys.readouterr().err
    assert main(["classify", "triage", "text", "--file", "x.txt"]) == 2


def test_texts_may_follow_the_options() -> None:
    args = build_parser().parse_args(
        ["triage", "t", "--collection", "tickets", "charged twice", "-k", "2", "app crash"]
    )
    assert (args.name, args.collection, args.k, args.texts) == ("t", "tickets", 2, ["charged twice", "app crash"])
    args = build_parser().parse_args(["classify", "t", "--top-k", "3", "charged twice"])
    assert (args.top_k, args.texts) == (3, ["charged twice"])
