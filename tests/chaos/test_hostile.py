"""A hostile-input battery: more than a thousand bad messages, in classes, through every door at once.

Every message is checked one by one. Through the Python client (each kind's
method, or ``eq.submit`` for fields no method takes) a hostile request must be
refused with a typed error of ``api_client.errors`` and leave no row behind.
Sent raw (plain Celery ``send_task`` with JSON, or straight onto the broker with
kombu: pickle, unknown task names, bodies that are not JSON, garbage headers)
it must end as a ``failed`` jobs row with a typed error within seconds, or be
dropped with a log line that names it. Valid jobs interleaved with the hostile
ones must all succeed, a pickle payload must never be unpickled (its canary
file never appears), and the worker must still run with the same processes at
the end.

Every mismatch is listed in one failure message with the per-class table,
which ``-s`` also prints (and ``hostile-summary.json`` under the test's
``tmp_path`` keeps). The worker runs with ``EMBEDQ_MAX_REQUEST_CHARS`` at 5
million characters, so requests over the total cap stay small enough to send
quickly.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from celery import Celery
from kombu import Connection, Exchange

from api_client import EmbedQ
from api_client.errors import (
    ERROR_TYPES,
    BadRequest,
    EmbedQError,
    LimitExceeded,
    UnknownClassifier,
    UnknownCollection,
    UnknownModel,
)
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

INTERACTIVE = "embedq.cpu.interactive"
BATCH = "embedq.cpu.batch"
PLAIN = "celery"
MODEL = helpers.MODEL
NAN, INF = float("nan"), float("inf")
HUGE_INT = 10**5000  # more digits than Python turns into text (4,300): json.dumps and f-strings raise on it

NAMES = (BadRequest, UnknownModel, UnknownCollection, UnknownClassifier)
UNKNOWN = (UnknownModel, UnknownCollection, UnknownClassifier)

CLASSES = {
    "schema": "bad schema and types",
    "task_name": "unknown task names",
    "pickle": "pickle payload (canary)",
    "not_json": "non-JSON bodies and protocol garbage",
    "too_many": "too many texts / too-large texts",
    "total_size": "total request over a size cap",
    "bad_text": "empty strings, NUL, lone surrogates, invalid UTF-8",
    "nan_dim": "NaN / inf and wrong dimensions",
    "huge_k": "huge k and index parameters",
    "huge_int": "integers too long to print",
    "metadata": "deep or huge metadata and filters",
    "odd_names": "path traversal and odd names",
    "unknown": "unknown models, classifiers, collections",
    "remote_code": "trust_remote_code and loader options",
    "internal": "internal fields set by a client",
    "routing": "hostile routing hints and idempotency keys",
}


# ---------------------------------------------------------------- the ledger


@dataclass
class Result:
    cls: str
    door: str  # client | celery | broker
    label: str
    outcome: str  # refused | failed | dropped, or what went wrong
    ok: bool
    detail: str = ""


@dataclass
class Ledger:
    results: list[Result] = field(default_factory=list)

    def add(self, cls: str, door: str, label: str, outcome: str, ok: bool, detail: str = "") -> None:
        assert cls in CLASSES, cls
        self.results.append(Result(cls, door, label, outcome, ok, detail[:300]))

    def table(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for result in self.results:
            row = table.setdefault(
                CLASSES[result.cls], {"sent": 0, "refused at client": 0, "failed row": 0, "dropped": 0, "WRONG": 0}
            )
            row["sent"] += 1
            if not result.ok:
                row["WRONG"] += 1
            elif result.outcome == "refused":
                row["refused at client"] += 1
            elif result.outcome == "failed":
                row["failed row"] += 1
            else:
                row["dropped"] += 1
        return table

    def render(self) -> str:
        table = self.table()
        columns = ["sent", "refused at client", "failed row", "dropped", "WRONG"]
        width = max(len(name) for name in table) + 2
        lines = [f"{'class':<{width}}" + "".join(f"{c:>19}" for c in columns)]
        totals = Counter[str]()
        for name, row in table.items():
            lines.append(f"{name:<{width}}" + "".join(f"{row[c]:>19}" for c in columns))
            totals.update(row)
        lines.append(f"{'total':<{width}}" + "".join(f"{totals[c]:>19}" for c in columns))
        return "\n".join(lines)

    def wrong(self) -> list[Result]:
        return [result for result in self.results if not result.ok]


# ---------------------------------------------------------------- hostile values


def deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_json(depth: int) -> str:
    """The JSON text of ``deep(depth)``, written without recursion (too deep for ``json.dumps``)."""
    return '{"a":' * depth + '{"leaf":1}' + "}" * depth


PATH_NAMES = [
    "../x",
    "../../etc/passwd",
    "/etc",
    "/etc/passwd",
    "a/b",
    "..",
    ".",
    "a\x00b",
    "tickets\x00",
    "\x00",
    "ünïcode",
    "名前",
    "tickets\u202e",
    "a" * 64,
    "",
    " ",
    "-x",
    "_x",
    "Tickets",
    "a b",
    "a\nb",
    "~root",
    "%2e%2e%2fx",
    "x\udc80",
    "tickets/../tickets",
    "C:\\Windows",
]
MODEL_PATHS = [
    "../../etc/passwd",
    "/etc/passwd",
    "/root/.cache/huggingface",
    "file:///etc/passwd",
    "http://example.invalid/model",
    "sentence-transformers/../../x",
    f"{MODEL}/../../../etc",
    "~/.ssh",
    "a\x00b",
    "x\udc80",
    "/" * 10,
    ".",
]
UNKNOWN_MODELS = [
    "no-such-model",
    "sentence-transformers/all-mpnet-base-v2",
    "bert-base-uncased",
    "all-MiniLM-L6-v3",
    "ALL-MINILM-L6-V2",
    f"{MODEL} ",
    f" {MODEL}",
    "gpt2",
]
BAD_TEXTS = ["", "   ", "\t\n", "\x00", "a\x00b", "\ud800", "x\udfff", "\udc80abc"]
LOADER_OPTIONS = [
    {"trust_remote_code": True},
    {"model_kwargs": {"trust_remote_code": True}},
    {"tokenizer_kwargs": {"trust_remote_code": True}},
    {"options": {"trust_remote_code": True}},
    {"revision": "main", "cache_folder": "/tmp/evil"},
]
INTERNAL_FIELDS = [
    {"job_id": "00000000-0000-0000-0000-000000000001"},
    {"status": "succeeded"},
    {"attempts": 0},
    {"max_attempts": 1_000_000},
    {"parent_id": "00000000-0000-0000-0000-000000000001"},
    {"queue": "embedq.gpu.batch"},
    {"worker": "someone-else@host/1"},
    {"result": {"count": 1}},
    {"request_sha256": "0" * 64},
    {"model_id": 1},
    {"internal": True},
]

# Wrong values per field: each one is not what the field takes.
WRONG: dict[str, list[Any]] = {
    "texts": ["one string", 3, None, {"a": 1}, [3], [None], [["nested"]], [True], []],
    "batch_size": ["32", 32.5, True, [32], None, 0, -1],
    "model": [3, None, [MODEL], {"name": MODEL}, ""],
    "normalize": ["yes", 1, None, [True]],
    "precision": ["int4", 3, None, "FLOAT32", ""],
    "truncate_dim": ["64", 0, -1, 64.0, True],
    "prompt": [3, "", ["query: "]],
    "prompt_name": [3, "", ["query"]],
    "backend": ["cuda", 3, "TORCH", ["torch"]],
    "metric": ["cosinus", 3, None, ""],
    "pairwise": ["true", 1, None],
    "top_k": ["5", 0, -3, 2.5, True, None],
    "max_pairs": ["9", 0, True, None],
    "threshold": ["0.5", [0.5], True, {"v": 1}],
    "min_size": ["2", 0, -1, True, None],
    "collection": [3, None, ["tickets"], {"n": "tickets"}, True],
    "documents": [
        "doc",
        [],
        [3],
        [{"id": "a"}],
        [{"text": "x"}],
        [{"id": 3, "text": "x"}],
        [{"id": "a", "text": 3}],
        [{"id": "a", "text": "x", "metadata": "m"}],
        [{"id": "a", "text": "x", "metadata": [1]}],
        [{"id": "a", "text": "x", "color": "red"}],
        [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}],
        {"id": "a", "text": "x"},
    ],
    "ids": ["a", [], [3], [""], [None], [["a"]]],
    "kind": ["btree", 3, None, "HNSW"],
    "params": ["M=8", [8], {"M": "8"}, {"M": 8.5}, {"M": True}, {"M": 0}, {"M": -8}, {"bogus": 3}],
    "k": ["3", 0, -1, 2.5, True, None],
    "filter": ["team=a", [1], {"team": [1]}, {"team": {"$ne": 1}}, {"team": None}],
    "include": ["text", ["embedding"], [3], None],
    "rerank_top": ["5", 0, True],
    "name": [3, None, ["intents"], True],
    "labels": ["card", [3], [""], None],
    "method": ["forest", 3, None],
    "eval_split": ["0.2", 1.0, -0.1, True],
    "seed": ["1", -1, 1.5, True, 2**32],
    "auto_promote": ["no", 0],
    "version": ["1", 0, -1, 1.5, True],
    "duplicate_threshold": ["0.9", 1.5, -2.0, True],
    "pairs": ["a,b", [], [["a", "b"]], [["a"], ["b"]], [[3, "b"], ["c", "d"]], None, [{"a": "b"}, {"c": "d"}]],
    "loss": ["triplet", 3, None],
    "matryoshka_dims": ["384", [0], [64, 128], [], [True], [64.0]],
    "min_recall": ["0.9", 1.5, -0.1],
    "eval_pairs": ["x", [["a"]]],
    "min_answered": [0.0, 1.5, "0.9"],
}
NONE_IS_FINE = {("reindex", "model"), ("train_classifier", "model"), ("fine_tune", "name")}
SAMPLED = {"schema": 3, "odd_names": 3, "internal": 3, "bad_text": 3}
"""Classes whose inline Celery copies are one case in N (the client gets every case): the worker records a
refused message in about 30 ms on two cores, and the whole file must stay within a ``make test`` budget."""


def banking(n: int, offset: int = 0) -> list[str]:
    return helpers.banking_texts(n, offset)


LABELLED = helpers.banking_labelled()


def base_requests() -> dict[str, dict[str, Any]]:
    """A valid request of each kind (the collection ``tickets`` and the classifier ``intents`` exist)."""
    first, second = sorted({label for _, label in LABELLED})[:2]
    train = [pair for pair in LABELLED if pair[1] == first][:8] + [pair for pair in LABELLED if pair[1] == second][:8]
    return {
        "encode": {"texts": ["my card was declined"]},
        "similarity": {"queries": ["card declined"], "texts": ["payment refused", "lost my phone"]},
        "paraphrases": {"texts": ["card declined", "payment refused", "lost my phone"]},
        "cluster": {"texts": ["card declined", "payment refused", "lost my phone"], "min_size": 1},
        "upsert": {"collection": "tickets", "documents": [{"id": "h1", "text": "a hostile doc", "metadata": {}}]},
        "delete": {"collection": "tickets", "ids": ["h1"]},
        "build_index": {"collection": "tickets", "kind": "flat"},
        "search": {"collection": "tickets", "queries": ["card declined"], "k": 3},
        "reindex": {"collection": "tickets"},
        "train_classifier": {"name": "intents", "texts": [t for t, _ in train], "labels": [lab for _, lab in train]},
        "classify": {"name": "intents", "texts": ["card declined"]},
        "triage": {"name": "intents", "collection": "tickets", "texts": ["card declined"]},
        "fine_tune": {"model": MODEL, "pairs": [["a", "b"], ["c", "d"]]},
    }


FIELDS: dict[str, list[str]] = {
    "encode": [
        "texts",
        "batch_size",
        "model",
        "normalize",
        "precision",
        "truncate_dim",
        "prompt",
        "prompt_name",
        "backend",
    ],
    "similarity": ["texts", "model", "metric", "pairwise", "batch_size", "backend"],
    "paraphrases": ["texts", "model", "metric", "top_k", "max_pairs", "threshold", "batch_size"],
    "cluster": ["texts", "model", "threshold", "min_size", "batch_size", "backend"],
    "upsert": ["collection", "documents", "batch_size", "backend"],
    "delete": ["collection", "ids"],
    "build_index": ["collection", "kind", "params"],
    "search": ["collection", "k", "filter", "threshold", "include", "batch_size", "rerank_top"],
    "reindex": ["collection", "model", "kind", "params", "min_recall"],
    "train_classifier": [
        "name",
        "texts",
        "labels",
        "method",
        "eval_split",
        "seed",
        "params",
        "min_answered",
        "auto_promote",
        "batch_size",
        "model",
    ],
    "classify": ["name", "texts", "top_k", "version", "batch_size"],
    "triage": ["name", "collection", "texts", "k", "duplicate_threshold", "top_k", "version"],
    "fine_tune": ["model", "loss", "pairs", "eval_pairs", "name", "matryoshka_dims", "seed", "params"],
}
# The request field each kind's texts live in (``queries`` for similarity and search too).
TEXT_FIELDS = {
    "encode": ["texts"],
    "similarity": ["queries", "texts"],
    "paraphrases": ["texts"],
    "cluster": ["texts"],
    "search": ["queries"],
    "classify": ["texts"],
    "triage": ["texts"],
    "train_classifier": ["texts"],
}


def mutate(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    out.update(changes)
    return out


@dataclass
class Case:
    cls: str
    kind: str
    label: str
    raw: Any
    expect: tuple[type[EmbedQError], ...] = (BadRequest,)
    client: bool = True
    celery: bool = True
    method: bool = True  # through the kind's own method when its arguments allow, else ``eq.submit``


def request_cases() -> Iterator[Case]:
    """Every hostile request, each sent through the client and as an inline plain Celery message."""
    base = base_requests()
    seen = Counter[str]()
    for cases in (schema_cases, size_cases, text_cases, number_cases, metadata_cases, name_cases, option_cases):
        for case in cases(base):
            seen[case.cls] += 1
            if seen[case.cls] % SAMPLED.get(case.cls, 1):
                case.celery = False
            yield case


def schema_cases(base: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """Bad schema and types."""
    for kind, fields in FIELDS.items():
        for name in fields:
            wrong = WRONG[name]
            if kind == "cluster" and name == "threshold":
                wrong = [*wrong, 1.5, -2.0]
            for value in wrong:
                if value is None and (kind, name) in NONE_IS_FINE:
                    continue
                yield Case("schema", kind, f"{kind}.{name}={value!r:.40}", mutate(base[kind], **{name: value}))
        yield Case("schema", kind, f"{kind} unknown option", mutate(base[kind], colour="red"), method=False)
    for kind in ("encode", "search", "fine_tune"):
        for raw in ("not an object", 3, ["texts", "x"], None, True):
            yield Case("schema", kind, f"{kind} request={raw!r}", raw, client=False)
    yield Case("schema", "search", "missing collection", {"queries": ["x"]}, method=False)
    yield Case("schema", "encode", "missing texts", {"model": MODEL}, method=False)


def size_cases(base: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """Too many texts, too-large texts, and a request over any sane total size."""
    # Too many texts, too-large texts (EMBEDQ_MAX_TEXTS_PER_JOB=3000, EMBEDQ_MAX_CHARS_PER_TEXT=2000).
    long = "y" * 2001
    for kind, fields in TEXT_FIELDS.items():
        for name in fields:
            count = 1001 if kind in ("search", "triage") else 3001  # max_queries for a search and a triage
            texts = ["q"] * count
            extra = {"labels": ["a", "b"] * (count // 2) + ["a"]} if kind == "train_classifier" else {}
            yield Case(
                "too_many",
                kind,
                f"{kind}.{name} x{count}",
                mutate(base[kind], **{name: texts}, **extra),
                (LimitExceeded,),
            )
            yield Case(
                "too_many",
                kind,
                f"{kind}.{name}[0] 2001 chars",
                mutate(base[kind], **{name: [long, *base[kind][name][1:]]}),
                (LimitExceeded,),
            )
    docs = [{"id": f"d{i}", "text": "x"} for i in range(3001)]
    yield Case("too_many", "upsert", "upsert 3001 documents", mutate(base["upsert"], documents=docs), (LimitExceeded,))
    yield Case(
        "too_many",
        "upsert",
        "upsert text 2001 chars",
        mutate(base["upsert"], documents=[{"id": "a", "text": long}]),
        (LimitExceeded,),
    )
    yield Case(
        "too_many", "upsert", "upsert id 513 chars", mutate(base["upsert"], documents=[{"id": "i" * 513, "text": "x"}])
    )
    yield Case(
        "too_many",
        "delete",
        "delete 3001 ids",
        mutate(base["delete"], ids=[f"d{i}" for i in range(3001)]),
        (LimitExceeded,),
    )
    yield Case("too_many", "delete", "delete id 513 chars", mutate(base["delete"], ids=["i" * 513]))
    yield Case("too_many", "encode", "encode prompt 2001 chars", mutate(base["encode"], prompt=long), (LimitExceeded,))
    yield Case(
        "too_many", "encode", "encode batch_size 1025", mutate(base["encode"], batch_size=1025), (LimitExceeded,)
    )
    yield Case(
        "too_many",
        "paraphrases",
        "paraphrases max_pairs 1,000,001",
        mutate(base["paraphrases"], max_pairs=1_000_001),
        (LimitExceeded,),
    )
    yield Case(
        "too_many",
        "fine_tune",
        "fine_tune 3001 pairs",
        mutate(base["fine_tune"], pairs=[["a", "b"]] * 3001),
        (LimitExceeded,),
    )
    yield Case(
        "too_many",
        "fine_tune",
        "fine_tune pair text 2001 chars",
        mutate(base["fine_tune"], pairs=[[long, "b"], ["c", "d"]]),
        (LimitExceeded,),
    )

    # A request within every per-item limit but over the total cap (12 to 30 million characters; the cap is 5).
    full = ["z" * 2000] * 3000
    yield Case(
        "total_size",
        "similarity",
        "similarity 3000x2000 + 3000x2000 chars",
        {"queries": full, "texts": full},
        (LimitExceeded,),
    )
    fat = [{"id": f"d{i}", "text": "z" * 2000, "metadata": {"blob": "m" * 8000}} for i in range(3000)]
    yield Case(
        "total_size",
        "upsert",
        "upsert 3000 docs of 10,000 chars",
        mutate(base["upsert"], documents=fat),
        (LimitExceeded,),
    )
    yield Case(
        "total_size",
        "fine_tune",
        "fine_tune 3000 pairs of 2x2000 chars",
        mutate(base["fine_tune"], pairs=[["z" * 2000, "w" * 2000]] * 3000),
        (LimitExceeded,),
        celery=False,
    )


def text_cases(base: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """Empty strings, NUL, lone surrogates."""
    # Empty strings, NUL, lone surrogates.
    for kind, fields in TEXT_FIELDS.items():
        for name in fields:
            for bad in BAD_TEXTS:
                rest = base[kind][name][1:]
                yield Case("bad_text", kind, f"{kind}.{name}[0]={bad!r}", mutate(base[kind], **{name: [bad, *rest]}))
    for bad in BAD_TEXTS:
        yield Case(
            "bad_text", "upsert", f"upsert text={bad!r}", mutate(base["upsert"], documents=[{"id": "a", "text": bad}])
        )
        yield Case(
            "bad_text", "upsert", f"upsert id={bad!r}", mutate(base["upsert"], documents=[{"id": bad, "text": "x"}])
        )
        yield Case("bad_text", "delete", f"delete id={bad!r}", mutate(base["delete"], ids=[bad]))
        yield Case(
            "bad_text",
            "fine_tune",
            f"fine_tune pair={bad!r}",
            mutate(base["fine_tune"], pairs=[[bad, "b"], ["c", "d"]]),
        )
    for bad in ("\x00", "\ud800", "a\udfffb"):
        yield Case("bad_text", "search", f"filter key {bad!r}", mutate(base["search"], filter={bad: "x"}))
        yield Case("bad_text", "search", f"filter value {bad!r}", mutate(base["search"], filter={"team": bad}))
        yield Case(
            "bad_text",
            "upsert",
            f"metadata key {bad!r}",
            mutate(base["upsert"], documents=[{"id": "a", "text": "x", "metadata": {bad: 1}}]),
        )
        yield Case(
            "bad_text",
            "upsert",
            f"metadata value {bad!r}",
            mutate(base["upsert"], documents=[{"id": "a", "text": "x", "metadata": {"k": [bad]}}]),
        )
        yield Case("bad_text", "encode", f"encode prompt {bad!r}", mutate(base["encode"], prompt=bad))
        yield Case("bad_text", "encode", f"encode model {bad!r}", mutate(base["encode"], model=bad), NAMES)
        labels = [bad if i == 0 else lab for i, lab in enumerate(base["train_classifier"]["labels"])]
        yield Case("bad_text", "train_classifier", f"label {bad!r}", mutate(base["train_classifier"], labels=labels))


def number_cases(base: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """NaN, inf and wrong dimensions; huge k, index parameters and integers."""
    # NaN, inf and wrong dimensions (no kind takes vectors: dimensions are truncate_dim and matryoshka_dims).
    for value in (NAN, INF, -INF):
        v = repr(value)
        yield Case("nan_dim", "paraphrases", f"threshold {v}", mutate(base["paraphrases"], threshold=value))
        yield Case("nan_dim", "cluster", f"threshold {v}", mutate(base["cluster"], threshold=value))
        yield Case("nan_dim", "search", f"threshold {v}", mutate(base["search"], threshold=value))
        yield Case("nan_dim", "triage", f"duplicate_threshold {v}", mutate(base["triage"], duplicate_threshold=value))
        yield Case("nan_dim", "reindex", f"min_recall {v}", mutate(base["reindex"], min_recall=value))
        for name in ("eval_split", "min_answered", "target_precision"):
            yield Case("nan_dim", "train_classifier", f"{name} {v}", mutate(base["train_classifier"], **{name: value}))
        for params in ({"C": value}, {"max_iter": value}):
            yield Case(
                "nan_dim", "train_classifier", f"params {params}", mutate(base["train_classifier"], params=params)
            )
        yield Case(
            "nan_dim",
            "train_classifier",
            f"linear_svc scale {v}",
            mutate(base["train_classifier"], method="linear_svc", params={"scale": value}),
        )
        yield Case(
            "nan_dim",
            "train_classifier",
            f"mlp alpha {v}",
            mutate(base["train_classifier"], method="mlp", params={"alpha": value}),
        )
        yield Case(
            "nan_dim", "fine_tune", f"learning_rate {v}", mutate(base["fine_tune"], params={"learning_rate": value})
        )
        yield Case(
            "nan_dim", "fine_tune", f"warmup_ratio {v}", mutate(base["fine_tune"], params={"warmup_ratio": value})
        )
        yield Case(
            "nan_dim",
            "fine_tune",
            f"cosent score {v}",
            mutate(base["fine_tune"], loss="cosent", pairs=[["a", "b", value], ["c", "d", 0.5]]),
        )
        yield Case(
            "nan_dim",
            "upsert",
            f"metadata {v}",
            mutate(base["upsert"], documents=[{"id": "a", "text": "x", "metadata": {"score": value}}]),
        )
        yield Case("nan_dim", "search", f"filter value {v}", mutate(base["search"], filter={"score": value}))
        yield Case(
            "nan_dim", "build_index", f"params M {v}", mutate(base["build_index"], kind="hnsw", params={"M": value})
        )
    for dim in (385, 10**6, 2**63):
        yield Case("nan_dim", "encode", f"truncate_dim {dim}", mutate(base["encode"], truncate_dim=dim))
        yield Case(
            "nan_dim", "fine_tune", f"matryoshka_dims [{dim}, 64]", mutate(base["fine_tune"], matryoshka_dims=[dim, 64])
        )
    yield Case(
        "nan_dim",
        "upsert",
        "document with a vector",
        mutate(base["upsert"], documents=[{"id": "a", "text": "x", "embedding": [0.1] * 383}]),
    )
    yield Case("nan_dim", "encode", "encode with vectors", mutate(base["encode"], vectors=[[0.1] * 383]), method=False)

    # Huge k and index parameters (the index-parameter requests name the spare collection ``ixbait``).
    for k in (1001, 10**6, 2**63, 10**30):
        yield Case("huge_k", "search", f"search k={k}", mutate(base["search"], k=k))
        yield Case("huge_k", "search", f"search rerank_top={k}", mutate(base["search"], rerank=MODEL, rerank_top=k))
        yield Case("huge_k", "triage", f"triage k={k}", mutate(base["triage"], k=k))
        yield Case("huge_k", "classify", f"classify top_k={k}", mutate(base["classify"], top_k=k))
        yield Case("huge_k", "triage", f"triage top_k={k}", mutate(base["triage"], top_k=k))
        yield Case("huge_k", "paraphrases", f"paraphrases top_k={k}", mutate(base["paraphrases"], top_k=k))
    for param, index in (
        ("M", "hnsw"),
        ("efConstruction", "hnsw"),
        ("efSearch", "hnsw"),
        ("nlist", "ivf"),
        ("nprobe", "ivf"),
    ):
        for value in (10**6, 2**31, 2**63, 10**30):
            raw = {"collection": "ixbait", "kind": index, "params": {param: value}}
            yield Case("huge_k", "build_index", f"build {index} {param}={value}", raw)
            yield Case("huge_k", "reindex", f"reindex {index} {param}={value}", raw, celery=False)

    # Integers too long to print (more than 4,300 digits): only a Python caller can send them.
    for kind, name in (
        ("search", "k"),
        ("encode", "batch_size"),
        ("encode", "truncate_dim"),
        ("classify", "version"),
        ("classify", "top_k"),
        ("train_classifier", "seed"),
        ("paraphrases", "max_pairs"),
        ("fine_tune", "seed"),
        ("cluster", "min_size"),
    ):
        yield Case("huge_int", kind, f"{kind}.{name}=10**5000", mutate(base[kind], **{name: HUGE_INT}), celery=False)
    yield Case(
        "huge_int",
        "build_index",
        "params M=10**5000",
        {"collection": "ixbait", "kind": "hnsw", "params": {"M": HUGE_INT}},
        celery=False,
    )
    yield Case(
        "huge_int", "search", "filter value 10**5000", mutate(base["search"], filter={"n": HUGE_INT}), celery=False
    )
    yield Case(
        "huge_int",
        "upsert",
        "metadata 10**5000",
        mutate(base["upsert"], documents=[{"id": "a", "text": "x", "metadata": {"n": HUGE_INT}}]),
        celery=False,
    )


def metadata_cases(base: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """Deep or huge metadata and filters."""

    # Deep or huge metadata and filters.
    def doc(metadata: Any) -> dict[str, Any]:
        return mutate(base["upsert"], documents=[{"id": "a", "text": "x", "metadata": metadata}])

    yield Case("metadata", "upsert", "metadata depth 200", doc(deep(200)))
    yield Case("metadata", "upsert", "metadata depth 900", doc(deep(900)))
    yield Case("metadata", "upsert", "metadata depth 5000", doc(deep(5000)), celery=False)
    yield Case("metadata", "upsert", "metadata 16 MB string", doc({"blob": "m" * (16 << 20)}))
    yield Case("metadata", "upsert", "metadata 100,000 keys", doc({f"k{i}": i for i in range(100_000)}))
    yield Case("metadata", "upsert", "metadata 1 MB key", doc({"k" * (1 << 20): 1}))
    yield Case("metadata", "upsert", "metadata list of 1,000,000 ints", doc({"list": list(range(1_000_000))}))
    yield Case(
        "metadata", "search", "filter 10,000 keys", mutate(base["search"], filter={f"k{i}": i for i in range(10_000)})
    )
    yield Case("metadata", "search", "filter 1 MB key", mutate(base["search"], filter={"k" * (1 << 20): 1}))
    yield Case("metadata", "search", "filter 1 MB value", mutate(base["search"], filter={"team": "v" * (1 << 20)}))
    yield Case("metadata", "search", "filter depth 200", mutate(base["search"], filter=deep(200)))


def name_cases(base: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """Path traversal, odd names, unknown models, classifiers and collections."""
    # Path traversal and odd names.
    for name in PATH_NAMES:
        for kind in ("upsert", "delete", "build_index", "search", "reindex", "triage"):
            yield Case("odd_names", kind, f"{kind} collection={name!r}", mutate(base[kind], collection=name), NAMES)
        for kind in ("classify", "triage", "train_classifier"):
            yield Case("odd_names", kind, f"{kind} name={name!r}", mutate(base[kind], name=name), NAMES)
        yield Case("odd_names", "fine_tune", f"fine_tune name={name!r}", mutate(base["fine_tune"], name=name), NAMES)
    for name in MODEL_PATHS:
        for kind in ("encode", "similarity", "cluster", "fine_tune", "reindex"):
            yield Case("odd_names", kind, f"{kind} model={name!r}", mutate(base[kind], model=name), NAMES)
        yield Case("odd_names", "search", f"search rerank={name!r}", mutate(base["search"], rerank=name), NAMES)
        yield Case("odd_names", "encode", f"encode prompt_name={name!r}", mutate(base["encode"], prompt_name=name))

    # Unknown models, classifiers, collections.
    for name in UNKNOWN_MODELS:
        for kind in ("encode", "similarity", "paraphrases", "cluster", "fine_tune", "reindex", "train_classifier"):
            yield Case("unknown", kind, f"{kind} model={name!r}", mutate(base[kind], model=name), (UnknownModel,))
        yield Case("unknown", "search", f"search rerank={name!r}", mutate(base["search"], rerank=name), (UnknownModel,))
    yield Case("unknown", "search", "rerank with a bi-encoder", mutate(base["search"], rerank=MODEL), (UnknownModel,))
    missing = [(kind, "name", "no-such-classifier", UnknownClassifier) for kind in ("classify", "triage")]
    missing += [(kind, "version", 99, UnknownClassifier) for kind in ("classify", "triage")]
    missing += [
        (kind, "collection", "no-such-collection", UnknownCollection)
        for kind in ("upsert", "delete", "build_index", "search", "reindex", "triage")
    ]
    for kind, key, value, error in missing:
        yield Case("unknown", kind, f"{kind} {key}={value!r}", mutate(base[kind], **{key: value}), (error,))


def option_cases(base: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """Loader options and fields only the service sets."""
    # trust_remote_code and other loader options, at the top and inside params.
    for kind, raw in base.items():
        for options in LOADER_OPTIONS:
            yield Case("remote_code", kind, f"{kind} {sorted(options)}", mutate(raw, **options), method=False)
    for kind in ("build_index", "reindex", "train_classifier", "fine_tune"):
        params = {"trust_remote_code": True}
        yield Case("remote_code", kind, f"{kind} params.trust_remote_code", mutate(base[kind], params=params))

    # Fields only the service sets.
    for name, value in (("id_from", "d00000"), ("id_to", "d99999")):
        yield Case("internal", "reindex", f"reindex {name}", mutate(base["reindex"], **{name: value}), method=False)
    for kind, raw in base.items():
        for internal in INTERNAL_FIELDS:
            yield Case("internal", kind, f"{kind} {sorted(internal)}", mutate(raw, **internal), method=False)


# ---------------------------------------------------------------- the client's door

POSITIONAL = {
    "encode": ["texts"],
    "similarity": ["queries", "texts"],
    "paraphrases": ["texts"],
    "cluster": ["texts"],
    "upsert": ["collection", "documents"],
    "delete": ["collection", "ids"],
    "build_index": ["collection"],
    "search": ["collection", "queries"],
    "reindex": ["collection"],
    "train_classifier": ["name", "texts", "labels"],
    "classify": ["name", "texts"],
    "triage": ["name"],
    "fine_tune": ["model", "pairs"],
}


def call_of(eq: EmbedQ, case: Case) -> Callable[[], Any]:
    """The kind's own method with the request's fields as its arguments, or ``eq.submit`` when they do not fit."""
    raw = case.raw
    method = getattr(eq, case.kind)
    if case.method and isinstance(raw, dict):
        positional = POSITIONAL[case.kind]
        keywords = {key: value for key, value in raw.items() if key not in positional}
        accepted = inspect.signature(method).parameters
        if all(key in raw for key in positional) and all(key in accepted for key in keywords):
            return lambda: method(*(raw[key] for key in positional), **keywords)
    return lambda: eq.submit(case.kind, raw)


# ---------------------------------------------------------------- raw messages onto the broker


def publish(
    broker_url: str,
    body: bytes,
    *,
    queue: str = INTERACTIVE,
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
    headers: dict[str, Any] | None = None,
) -> None:
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        producer.publish(
            body,
            exchange=Exchange(queue, type="direct"),
            routing_key=queue,
            content_type=content_type,
            content_encoding=content_encoding,
            headers=headers or {},
            retry=True,
        )


def task_headers(task: Any, task_id: Any, **more: Any) -> dict[str, Any]:
    """Celery protocol 2 headers."""
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "ignore_result": True,
        "origin": "hostile@test",
        **more,
    }


EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def body_json(args: Any, kwargs: Any) -> bytes:
    return json.dumps([args, kwargs, EMBED]).encode()


class Canary:
    """Unpickling it creates ``path``: the file must never appear."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


# ---------------------------------------------------------------- the battery


WORKER = "hostile@%h"


@dataclass
class Worker:
    """The one worker of the battery, restarted (and the death recorded) if a message kills it."""

    env: dict[str, str]
    database_url: str
    log: Path
    proc: Any = None
    pids: set[int] = field(default_factory=set)
    current: set[int] = field(default_factory=set)
    deaths: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.proc = helpers.start_worker(self.env, self.database_url, WORKER, self.log)
        self.current = worker_pids(self.proc)
        if not self.pids:
            self.pids = set(self.current)

    def alive(self) -> bool:
        """The supervisor and every process it had when it was ready (a crashed consumer is a zombie first)."""
        if self.proc.poll() is not None:
            return False
        for pid in self.current:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                return False
        return True

    def restart_after(self, label: str) -> None:
        self.deaths.append(label)
        try:
            self.proc.wait(timeout=30)
        except Exception:  # the supervisor did not stop its other consumers
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        time.sleep(0.5)
        helpers.flush_redis(self.env["EMBEDQ_BROKER_URL"])  # the poison message was restored unacknowledged
        self.start()


class Battery:
    def __init__(self, eq: EmbedQ, db: psycopg.Connection, worker: Worker, ledger: Ledger) -> None:
        self.eq = eq
        self.db = db
        self.worker = worker
        self.broker_url = worker.env["EMBEDQ_BROKER_URL"]
        self.log = worker.log
        self.ledger = ledger
        broker_url = self.broker_url
        self.app = Celery(broker=broker_url, set_as_current=False)
        self.valid_jobs: list[tuple[str, Any]] = []
        self.valid_inline: list[str] = []
        self.raw_expect: list[tuple[Case, str]] = []  # inline requests that must end as failed rows (or dropped)
        self.dropped: list[tuple[str, str, str, tuple[int, int]]] = []  # (cls, label, task id, its log window)
        self.n_valid = 0
        self.last: tuple[str, str, str] | None = None  # the last raw message that looked consumed

    def close(self) -> None:
        self.app.close()

    # -- bookkeeping

    def counts(self) -> tuple[int, ...]:
        row = self.db.execute(
            "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM collections), "
            "(SELECT count(*) FROM classifiers), (SELECT count(*) FROM models)"
        ).fetchone()
        assert row is not None
        return tuple(row)

    def cancel(self, job_id: str) -> None:
        self.db.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL "
            "WHERE (id = %s OR parent_id = %s) AND status IN ('queued', 'running')",
            (job_id, job_id),
        )

    # -- valid work between the hostile messages

    def valid_request(self) -> tuple[str, dict[str, Any]]:
        i = self.n_valid
        self.n_valid += 1
        texts = helpers.unique_texts(3, tag=f"valid-{i}")
        choices = [
            ("encode", {"texts": texts, "normalize": True}),
            ("similarity", {"queries": texts[:1], "texts": texts}),
            ("paraphrases", {"texts": texts}),
            ("cluster", {"texts": texts, "min_size": 1}),
            ("search", {"collection": "tickets", "queries": texts[:2], "k": 3}),
            ("classify", {"name": "intents", "texts": texts}),
            ("triage", {"name": "intents", "collection": "tickets", "texts": texts[:1]}),
            ("upsert", {"collection": "tickets", "documents": [{"id": f"valid-{i}", "text": texts[0]}]}),
            ("delete", {"collection": "tickets", "ids": [f"valid-{i - 1}", "never-there"]}),
        ]
        return choices[i % len(choices)]

    def valid_through_client(self) -> None:
        kind, raw = self.valid_request()
        self.valid_jobs.append((kind, self.eq.submit(kind, raw)))

    def valid_through_celery(self) -> None:
        kind, raw = self.valid_request()
        task_id = str(uuid.uuid4())
        self.app.send_task(f"embedq.{kind}", kwargs={"request": raw}, queue=INTERACTIVE, task_id=task_id)
        self.valid_inline.append(task_id)

    # -- the client's door

    def through_client(self, case: Case, call: Callable[[], Any] | None = None) -> None:
        before = self.counts()
        started = time.monotonic()
        ok, outcome, detail = False, "", ""
        try:
            job = (call or call_of(self.eq, case))()
        except case.expect as exc:
            ok, outcome, detail = True, "refused", f"{type(exc).__name__}: {exc.message}"
        except EmbedQError as exc:
            outcome, detail = f"refused with {type(exc).__name__}, expected {names(case.expect)}", exc.message
        except Exception as exc:
            outcome, detail = f"untyped {type(exc).__name__}", str(exc)
        else:
            job_id = getattr(job, "id", None)
            if job_id is not None:
                self.cancel(job_id)  # what the code should have refused must not run
            outcome, detail = "ACCEPTED", f"job {job_id}" if job_id else repr(job)[:200]
        elapsed = time.monotonic() - started
        after = self.counts()
        if ok and after != before:
            ok, outcome = False, f"refused, but rows were written: {before} -> {after}"
        if elapsed > 10:
            ok, outcome = False, f"{outcome} after {elapsed:.0f}s"
        self.ledger.add(case.cls, "client", case.label, outcome, ok, detail)

    # -- plain Celery

    def through_celery(self, case: Case, queue: str = INTERACTIVE) -> None:
        task_id = str(uuid.uuid4())
        try:
            self.app.send_task(f"embedq.{case.kind}", kwargs={"request": case.raw}, queue=queue, task_id=task_id)
        except Exception as exc:  # nothing left the client: as good as refused, but say so
            self.ledger.add(case.cls, "celery", case.label, "refused", True, f"not sendable: {type(exc).__name__}")
            return
        self.raw_expect.append((case, task_id))

    def send_dropped(self, cls: str, label: str, send: Callable[[str], None]) -> None:
        """Send one raw message and wait until it is consumed: it must neither hang nor kill the worker.

        The worker log written while it alone was consumed is kept, for ``check_dropped``.
        """
        self.ensure_alive()
        task_id = str(uuid.uuid4())
        start = self.log.stat().st_size
        send(task_id)
        deadline = time.monotonic() + 20
        calm = 0
        while time.monotonic() < deadline and self.worker.alive():
            # Three looks in a row, 30 ms apart: not just the moment between its pop and its unacked record.
            calm = calm + 1 if self.drained() else 0
            if calm == 3:
                break
            time.sleep(0.03)
        time.sleep(0.1)  # a consumer can die after it acknowledged the message (an unknown task's failure record)
        if self.worker.alive() and calm == 3:
            self.dropped.append((cls, label, task_id, (start, self.log.stat().st_size)))
            self.last = (cls, label, task_id)
            return
        if self.worker.alive():
            self.ledger.add(cls, "broker", label, "HUNG: not consumed within 20s", False, task_id)
            return
        helpers.wait_until(lambda: self.worker.proc.poll() is not None, timeout=30, what="the worker to exit")
        outcome = f"KILLED THE WORKER (exit status {self.worker.proc.returncode})"
        self.ledger.add(cls, "broker", label, outcome, False, task_id)
        self.worker.restart_after(label)

    def wait_raw(self, timeout: float = 90) -> None:
        """Each inline request's row: failed with an expected typed error (or no row and a log line naming it)."""
        ids = [task_id for _, task_id in self.raw_expect]
        deadline = time.monotonic() + timeout
        rows: dict[str, tuple[str, Any]] = {}
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            found = self.db.execute("SELECT id::text, status, error FROM jobs WHERE id = ANY(%s::uuid[])", (ids,))
            now = {job_id: (status, error) for job_id, status, error in found}
            for job_id, (status, _) in now.items():
                if status in ("queued", "running"):
                    self.cancel(job_id)  # accepted: it should have been refused; stop it
            if now != rows:
                rows, quiet_since = now, time.monotonic()
            settled = all(status not in ("queued", "running") for status, _ in rows.values())
            if settled and (len(rows) == len(ids) or (self.drained() and time.monotonic() - quiet_since > 3)):
                break
            time.sleep(0.2)
        log = self.log.read_text(errors="replace")
        for case, task_id in self.raw_expect:
            status, error = rows.get(task_id, (None, None))
            if status is None:
                named = task_id in log
                outcome = "dropped" if named else "no row and no log line naming it"
                self.ledger.add(case.cls, "celery", case.label, outcome, named, task_id)
            elif status != "failed":
                self.ledger.add(case.cls, "celery", case.label, f"ACCEPTED (row {status})", False, task_id)
            else:
                cls = ERROR_TYPES.get(error.get("type")) if isinstance(error, dict) else None
                good = cls is not None and issubclass(cls, case.expect)
                outcome = "failed" if good else f"failed with {error.get('type')}, expected {names(case.expect)}"
                self.ledger.add(case.cls, "celery", case.label, outcome, good, str(error.get("message"))[:200])
        self.raw_expect.clear()

    def drained(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.broker_url)
        try:
            waiting = sum(int(client.llen(queue)) for queue in (INTERACTIVE, BATCH, PLAIN))
            unacked = int(client.hlen("unacked"))
        finally:
            client.close()
        return waiting == 0 and unacked == 0

    def ensure_alive(self) -> None:
        """A consumer that died after it acknowledged the last message (an unknown task's failure record, say):
        that message killed it."""
        time.sleep(0.05)
        if self.worker.alive() or self.last is None:
            return
        cls, label, task_id = self.last
        self.dropped = [entry for entry in self.dropped if entry[2] != task_id]
        helpers.wait_until(lambda: self.worker.proc.poll() is not None, timeout=30, what="the worker to exit")
        outcome = f"KILLED THE WORKER after it was consumed (exit status {self.worker.proc.returncode})"
        self.ledger.add(cls, "broker", label, outcome, False, task_id)
        self.worker.restart_after(label)

    def check_dropped(self) -> None:
        """Each raw message: a failed row with a typed error, or no row and a log line of warning level or
        above written while it alone was being consumed (or naming it)."""
        time.sleep(0.5)
        self.ensure_alive()
        log = self.log.read_bytes()
        ids = [task_id for _, _, task_id, _ in self.dropped]
        found = self.db.execute("SELECT id::text, status, error FROM jobs WHERE id = ANY(%s::uuid[])", (ids,))
        rows = {job_id: (status, error) for job_id, status, error in found}
        for cls, label, task_id, (start, end) in self.dropped:
            if task_id in rows:  # it reached the task: it must have failed with a typed error
                status, error = rows[task_id]
                kind = ERROR_TYPES.get(error.get("type")) if isinstance(error, dict) else None
                good = status == "failed" and kind is not None and issubclass(kind, BadRequest)
                outcome = "failed" if good else f"a jobs row ended {status} ({error})"
                self.ledger.add(cls, "broker", label, outcome, good, task_id)
                continue
            window = log[start:end]
            named = task_id.encode() in log or any(level in window for level in (b"WARNING", b"ERROR", b"CRITICAL"))
            outcome = "dropped" if named else "silently dropped (no log line)"
            self.ledger.add(cls, "broker", label, outcome, named, task_id)
        self.dropped.clear()


def names(errors: tuple[type, ...]) -> str:
    return "/".join(error.__name__ for error in errors)


def worker_pids(proc: Any) -> set[int]:
    root = psutil.Process(proc.pid)
    return {root.pid, *(child.pid for child in root.children(recursive=True))}


# ---------------------------------------------------------------- the tests


@contextmanager
def hostile_battery(isolated_database: str, broker_url: str, tmp_path: Path, title: str) -> Iterator[Battery]:
    """One worker on its own database and Redis database, a client, and the ledger; after the body: the table,
    the canary, the worker's survival and every case's outcome checked."""
    broker = helpers.other_redis_db(broker_url)
    helpers.flush_redis(broker_url)  # nothing left over in either test database of the broker
    env = helpers.worker_env(
        broker, isolated_database, EMBEDQ_ARTIFACT_ROOT=str(tmp_path / "artifacts"), EMBEDQ_MAX_REQUEST_CHARS="5000000"
    )
    worker = Worker(env, isolated_database, tmp_path / "worker.log")
    worker.start()
    eq = EmbedQ(get_settings(env, env_file=False))
    ledger = Ledger()
    db = psycopg.connect(isolated_database, autocommit=True)
    battery = Battery(eq, db, worker, ledger)
    summary_path = tmp_path / "hostile-summary.json"
    try:
        setup(eq)
        yield battery
        final_phase(battery)
    finally:
        battery.close()
        eq.close()
        db.close()
        alive = worker.alive()
        final_pids = worker_pids(worker.proc) if alive else set()
        stop_worker(worker.proc, timeout=30)
        helpers.flush_redis(broker)  # no hostile message may reach a later test's worker
        summary = {"table": ledger.table(), "wrong": [vars(result) for result in ledger.wrong()]}
        summary_path.write_text(json.dumps(summary, indent=1, ensure_ascii=True))
        print(f"\n{title}: hostile inputs by class (summary: {summary_path}):\n{ledger.render()}")

    assert not (tmp_path / CANARY).exists(), "a pickle payload was unpickled by the worker"
    assert not worker.deaths, f"messages killed the worker: {worker.deaths}"
    assert alive, f"the worker died\n{worker.log.read_text(errors='replace')[-3000:]}"
    assert final_pids == worker.pids, f"worker processes changed: {sorted(worker.pids)} -> {sorted(final_pids)}"
    wrong = ledger.wrong()
    listing = "\n".join(f"  [{r.cls}] {r.door}: {r.label}: {r.outcome} ({r.detail[:160]})" for r in wrong[:400])
    assert not wrong, f"{len(wrong)} hostile inputs were not handled as they should be:\n{listing}\n{ledger.render()}"


CANARY = "canary-unpickled"


def test_hostile_requests(isolated_database: str, broker_url: str, tmp_path: Path) -> None:
    """Every hostile request through the client (refused, no row) and as a plain Celery message (a failed row)."""
    with hostile_battery(isolated_database, broker_url, tmp_path, "requests") as battery:
        cases = list(request_cases())
        client_phase(battery, cases)
        celery_phase(battery, cases)
        results = battery.ledger.results
        assert len(results) >= 1000 and len({r.cls for r in results}) >= 12


def test_hostile_raw_messages(isolated_database: str, broker_url: str, tmp_path: Path) -> None:
    """Unknown task names, pickle, bodies that are not JSON and garbage headers, straight onto the broker:
    each dropped with a log line (or a failed row), none unpickled, none killing the worker.

    Each message is sent alone and waited for; one that kills the worker is recorded and the worker restarted
    (with the poison message flushed from Redis), so one run lists every such message.
    """
    with hostile_battery(isolated_database, broker_url, tmp_path, "raw messages") as battery:
        broker = battery.broker_url
        broker_phase(battery, broker, tmp_path / CANARY)
        garbage_phase(battery, broker)
        header_phase(battery, broker)
        assert len({r.cls for r in battery.ledger.results}) >= 4


def setup(eq: EmbedQ) -> None:
    """What the valid requests name: a collection with an index, a spare one, a zero-shot classifier."""
    eq.create_collection("tickets")
    docs = [{"id": f"t{i}", "text": text, "metadata": {"team": "cards"}} for i, text in enumerate(banking(24))]
    eq.upsert("tickets", docs).result(timeout=60)
    eq.build_index("tickets", kind="flat").result(timeout=60)
    eq.create_collection("ixbait")
    eq.upsert("ixbait", [{"id": f"b{i}", "text": text} for i, text in enumerate(banking(12, 24))]).result(timeout=60)
    eq.create_classifier("intents", labels={"card": "problems with a card", "transfer": "money transfers"})
    eq.encode(["warm"]).result(timeout=60)  # the model's row exists: truncate_dim and prompts are checked


def client_phase(battery: Battery, cases: list[Case]) -> None:
    """The client's door: every case refused before a row exists; valid jobs in between."""
    eq = battery.eq
    for i, case in enumerate(cases):
        if case.client:
            battery.through_client(case)
        if i % 40 == 0:
            battery.valid_through_client()
    for name in PATH_NAMES:
        creates: list[tuple[str, Callable[[], Any]]] = [
            ("create_collection", partial(eq.create_collection, name)),
            ("create_classifier", partial(eq.create_classifier, name, labels={"a": "x", "b": "y"})),
            ("create_collection model", partial(eq.create_collection, "ok-name", model=name)),
            ("create_classifier model", partial(eq.create_classifier, "ok-name", model=name)),
        ]
        for label, create in creates:
            battery.through_client(Case("odd_names", "encode", f"{label} {name!r}", None, NAMES), create)
    for lane, hardware in (("gpu", None), ("../x", None), ("lane", None), (3, None), (None, "tpu"), (None, "../../x")):
        battery.through_client(
            Case("routing", "encode", f"lane={lane!r} hardware={hardware!r}", None),
            partial(eq.encode, ["x"], lane=lane, hardware=hardware),
        )
    for key in ("\x00", "\udc80", os.urandom(50_000).hex(), 3, ["k"]):
        battery.through_client(
            Case("routing", "encode", f"idempotency_key={key!r:.30}", None),
            partial(eq.encode, ["x"], idempotency_key=key),
        )


def celery_phase(battery: Battery, cases: list[Case]) -> None:
    """Plain Celery: every case as an inline request, ending as a failed row; valid ones in between."""
    for i, case in enumerate(cases):
        if case.celery:
            battery.through_celery(case, queue=(INTERACTIVE, INTERACTIVE, PLAIN)[i % 3])
        if i % 40 == 0:
            battery.valid_through_celery()
    # Messages that are not {'request': ...} or {'job_id': <uuid>}.
    shapes: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
        ("job_id and request", {"job_id": str(uuid.uuid4()), "request": {"texts": ["x"]}}, ()),
        ("request and internal", {"request": {"texts": ["x"]}, "internal": True}, ()),
        ("job_id not a uuid", {"job_id": "../../etc/passwd"}, ()),
        ("job_id an int", {"job_id": 3}, ()),
        ("positional args", {}, ("texts", ["x"])),
        ("texts as kwargs", {"texts": ["x"]}, ()),
    ]
    for label, kwargs, args in shapes:
        case = Case("internal", "encode", label, None)
        task_id = str(uuid.uuid4())
        battery.app.send_task("embedq.encode", args=args, kwargs=kwargs, queue=INTERACTIVE, task_id=task_id)
        battery.raw_expect.append((case, task_id))
    battery.wait_raw()


def broker_phase(battery: Battery, broker: str, canary: Path) -> None:
    """Straight onto the broker: unknown task names and pickle (its canary file must never appear)."""
    app = battery.app
    for name in (
        "embedq.nope",
        "embedq.",
        "embedq.Encode",
        "embedq.encode.x",
        "../embedq.encode",
        "embedq.handle",
        "embedq.worker.handling.handle",
        "os.system",
        "embedq.encode\x00",
        "embedq.ëncode",
        "e" * 300,
        "embedq.encode ",
        "subprocess.Popen",
        "builtins.eval",
    ):
        for queue in (INTERACTIVE, BATCH, PLAIN):
            battery.send_dropped(
                "task_name",
                f"task {name!r:.40} on {queue}",
                lambda task_id, name=name, queue=queue: app.send_task(
                    name, kwargs={"request": {"texts": ["x"]}}, queue=queue, task_id=task_id
                ),
            )
    for task in ("embedq.encode", "embedq.search", "embedq.nope"):
        battery.send_dropped(
            "pickle",
            f"send_task({task}, serializer=pickle)",
            lambda task_id, task=task: app.send_task(
                task, kwargs={"request": Canary(canary)}, queue=INTERACTIVE, task_id=task_id, serializer="pickle"
            ),
        )
    import pickle

    payload = pickle.dumps(((), {"request": Canary(canary)}, EMBED))
    for content_type, encoding in (
        ("application/x-python-serialize", "binary"),
        ("application/json", "utf-8"),
        ("application/data", "binary"),
        ("application/x-python-serialize", "utf-8"),
    ):
        for queue in (INTERACTIVE, BATCH):
            battery.send_dropped(
                "pickle",
                f"pickle body as {content_type} on {queue}",
                lambda task_id, ct=content_type, enc=encoding, q=queue: publish(
                    broker,
                    payload,
                    queue=q,
                    content_type=ct,
                    content_encoding=enc,
                    headers=task_headers("embedq.encode", task_id),
                ),
            )
    proto1 = pickle.dumps({"task": "embedq.encode", "id": "p1", "args": [], "kwargs": {"request": Canary(canary)}})
    battery.send_dropped(
        "pickle",
        "protocol 1 pickle payload",
        lambda task_id: publish(
            broker,
            proto1,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"hostile_id": task_id},
        ),
    )
    yaml_body = f"!!python/object/apply:builtins.open ['{canary}', 'w']".encode()
    for content_type in ("application/x-yaml", "application/x-msgpack"):
        battery.send_dropped(
            "pickle",
            f"{content_type} body",
            lambda task_id, ct=content_type: publish(
                broker,
                yaml_body,
                content_type=ct,
                content_encoding="binary",
                headers=task_headers("embedq.encode", task_id),
            ),
        )


def garbage_phase(battery: Battery, broker: str) -> None:
    """Bodies that are not JSON or not Celery's shape, and a message naming a job of another kind."""
    garbage = [
        b"not json",
        b"{",
        b"\xff\xfe\xfd",
        b"[1, 2",
        b"null",
        b"123",
        b'"a string"',
        b"[]",
        b'{"a": 1}',
        b"[[], [], []]",
        b'[[], {"request": {"texts": ["\xff\xfe"]}}, {}]',
        b"[" * 100_000 + b"]" * 100_000,
        deep_json(5000).encode(),
        b'[[], {"request": {"texts": ["x"], "batch_size": 1' + b"0" * 5000 + b"}}, {}]",
        b'[[], {"request": {"texts": []}}, "embed"]',
        b'[[], {"request": {"texts": []}}, {"callbacks": 3}]',
        json.dumps(
            [
                [],
                {"request": {"collection": "tickets", "documents": [{"id": "a", "text": "x", "metadata": deep(900)}]}},
                EMBED,
            ]
        ).encode(),
    ]
    for i, body in enumerate(garbage):
        battery.send_dropped(
            "not_json",
            f"body {body[:30]!r} ({len(body):,} bytes)",
            lambda task_id, body=body, i=i: publish(
                broker, body, queue=(INTERACTIVE, BATCH)[i % 2], headers=task_headers("embedq.encode", task_id)
            ),
        )
    # A message naming a job of another kind: refused with WrongKind, the row left as it was.
    done = battery.eq.encode(["a job of another kind"])
    assert done.wait(timeout=60).status == "succeeded"
    battery.send_dropped(
        "internal",
        "job_id of an encode job sent to embedq.search",
        lambda task_id: battery.app.send_task(
            "embedq.search", kwargs={"job_id": done.id}, queue=INTERACTIVE, task_id=task_id
        ),
    )
    battery.check_dropped()
    assert done.info().status == "succeeded"  # the misdirected message left its row alone


def header_phase(battery: Battery, broker: str) -> None:
    """Protocol garbage in the headers, last: a message that breaks the consumer must not break the rest."""
    header_garbage: list[tuple[str, dict[str, Any]]] = [
        ("task name a list", {"task": ["embedq.encode"]}),
        ("task name a dict", {"task": {"name": "embedq.encode"}}),
        ("task name an int", {"task": 3}),
        ("task name null", {"task": None}),
        ("id a dict", {"id": {"a": 1}}),
        ("id null", {"id": None}),
        ("eta garbage", {"eta": "the day after tomorrow"}),
        ("expires garbage", {"expires": "soon"}),
        ("timelimit garbage", {"timelimit": ["a", "b"]}),
        ("retries garbage", {"retries": "many"}),
        ("unknown task, id a dict", {"task": "embedq.nope", "id": {"a": 1}}),
    ]
    for i, (label, override) in enumerate(header_garbage):
        battery.send_dropped(
            "not_json",
            f"headers: {label}",
            lambda task_id, override=override, i=i: publish(
                broker,
                body_json([], {"request": {"texts": [], "tag": f"header garbage {i}"}}),
                headers={**task_headers("embedq.encode", task_id), **override, "hostile_id": task_id},
            ),
        )
    battery.check_dropped()


def final_phase(battery: Battery) -> None:
    """Every valid job interleaved with the hostile ones succeeded, and valid work still runs after all of it."""
    eq = battery.eq
    battery.ensure_alive()
    battery.valid_through_client()
    battery.valid_through_celery()
    for kind, job in battery.valid_jobs:
        info = job.wait(timeout=60)
        assert info.status == "succeeded", f"valid {kind} job {job.id}: {info.status} {info.error}"
    for task_id in battery.valid_inline:
        info = helpers.wait_until(
            lambda task_id=task_id: terminal(battery.db, task_id), timeout=60, what=f"valid inline {task_id}"
        )
        assert info[0] == "succeeded", f"valid inline job {task_id}: {info}"
    assert eq.encode(["still here"]).result(timeout=60).shape == (1, 384)


def terminal(db: psycopg.Connection, job_id: str) -> tuple[str, Any] | None:
    row = db.execute("SELECT status, error FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return (row[0], row[1]) if row is not None and row[0] in ("succeeded", "failed", "cancelled") else None


@pytest.fixture(autouse=True)
def _no_canary_left(tmp_path: Path) -> Iterator[None]:
    yield
    assert not (tmp_path / "canary-unpickled").exists()
