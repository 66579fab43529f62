"""``embedq collections``, ``upsert``, ``index build``, ``search``, ``delete`` and ``reindex`` against the
session's servers and worker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.integration.test_cli import embedq
from tests.integration.test_collections import TICKETS

NOTES = ["Refunds take five business days to reach your card", "Two-factor codes expire after one minute"]


def jsonl(path: Path, rows: list[dict]) -> str:
    lines = [json.dumps(row) for row in rows]
    path.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n")  # a blank line inside is skipped
    return str(path)


def ok(args: list[str], env: dict[str, str]) -> str:
    out = embedq(args, env)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def name() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def test_create_upsert_build_search_delete_and_list(eq, worker_env, tmp_path: Path) -> None:
    collection = name()
    created = json.loads(ok(["collections", "create", collection], worker_env))
    assert created["name"] == collection and created["size"] == 0 and created["metric"] == "cosine"

    tickets = jsonl(tmp_path / "tickets.jsonl", [{"id": i, "text": t, "metadata": m} for i, t, m in TICKETS])
    upsert = embedq(["upsert", collection, tickets, "--progress"], worker_env)
    assert upsert.returncode == 0, upsert.stderr.decode()
    assert json.loads(upsert.stdout)["changed"] == 6 and "100%" in upsert.stderr.decode()
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(NOTES) + "\n\n")
    assert json.loads(ok(["upsert", collection, str(notes)], worker_env))["changed"] == 2

    built = json.loads(ok(["index", "build", collection, "--kind", "flat"], worker_env))
    assert built["kind"] == "flat" and built["count"] == 8

    query = "how long until my money comes back"
    lines = [line.split("\t") for line in ok(["search", collection, query, "-k", "4"], worker_env).splitlines()]
    expected = eq.search(collection, [query], k=4).result(timeout=60)[0]
    assert [row[1] for row in lines] == [hit["id"] for hit in expected]
    assert "1" in [row[1] for row in lines], "plain-text lines are ids by line number"
    assert all(abs(float(row[0]) - hit["score"]) < 1e-4 for row, hit in zip(lines, expected, strict=True))
    assert [row[2] for row in lines] == [hit["text"] for hit in expected]

    queries = ["double charge", "phone app problem"]
    args = ["search", collection, *queries, "-k", "2", "--filter", "team=billing", "--filter", "priority=3"]
    filtered = json.loads(ok([*args, "--json"], worker_env))
    assert filtered == eq.search(collection, queries, k=2, filter={"team": "billing", "priority": 3}).result(60)
    assert [[hit["id"] for hit in hits] for hits in filtered] == [["T-6"], ["T-6"]]
    blocks = ok(args, worker_env).split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [f"# {q}" for q in queries]

    job_id = ok(["delete", collection, "T-1", "2", "--no-wait"], worker_env).strip()
    ok(["result", job_id, "--timeout", "60"], worker_env)
    after = [line.split("\t")[1] for line in ok(["search", collection, "refund", "-k", "8"], worker_env).splitlines()]
    assert len(after) == 6 and "T-1" not in after and "2" not in after

    table = ok(["collections"], worker_env).splitlines()
    row = next(line.split() for line in table if line.startswith(collection + " "))
    assert row[3:] == ["6", "v1", "flat", "8", "2"]  # size, active index, pending (the two deletes)
    assert json.loads(ok(["collection", collection], worker_env))["size"] == 6
    listed = {c["name"]: c for c in json.loads(ok(["collections", "--json"], worker_env))}
    assert listed[collection]["size"] == 6

    reindexed = embedq(["reindex", collection, "--min-recall", "0.9", "--progress"], worker_env)
    assert reindexed.returncode == 0, reindexed.stderr.decode()
    assert eq.collection(collection)["active_index"]["version"] == 2
    assert eq.collection(collection)["pending"] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "fine"}\n{"id": "b", "text": "fine"}\n{"id": "c", text}\n', "line 3: not valid JSON"),
        ('{"id": "a", "text": "fine"}\n\n{"id": "b", "text": "  "}\n', "line 3: the text is empty or only whitespace"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "line 2: id: 'a' is also line 1; ids must be unique"),
        ('{"id": 7, "text": "x"}\n', "line 1: id: expected a non-empty string id, got 7"),
        ('{"id": "a", "text": "x"}\n[1, 2]\n', 'line 2: expected a JSON object {"id", "text", "metadata"}'),
        ("fine\n\nafter a blank line\n", "line 2: the text is empty or only whitespace"),
    ],
)
def test_a_bad_line_is_named_by_its_number(eq, db, worker_env, tmp_path: Path, content: str, message: str) -> None:
    collection = name()
    eq.create_collection(collection)
    path = tmp_path / "docs.jsonl"
    path.write_text(content)
    out = embedq(["upsert", collection, str(path)], worker_env)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert err.count("\n") == 1 and err.startswith(f"embedq: BadRequest: {path} {message}"), err
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["collection", "nope"],
        ["search", "nope", "x"],
        ["upsert", "nope", "-"],
        ["delete", "nope", "a"],
        ["index", "build", "nope"],
        ["reindex", "nope"],
    ],
)
def test_an_unknown_collection_is_bad_input(eq, worker_env, args: list[str]) -> None:
    out = embedq(args, worker_env, b"a text\n")
    assert out.returncode == 2
    assert out.stderr.decode().startswith("embedq: UnknownCollection: collection: no collection 'nope'")


def test_bad_filters_and_names_are_usage_errors(eq, worker_env) -> None:
    collection = name()
    eq.create_collection(collection)
    no_equals = embedq(["search", collection, "x", "--filter", "team"], worker_env)
    assert no_equals.returncode == 2 and "--filter 'team': expected KEY=VALUE" in no_equals.stderr.decode()
    a_list = embedq(["search", collection, "x", "--filter", "team=[1]"], worker_env)
    assert a_list.returncode == 2 and "filter.team" in a_list.stderr.decode()
    bad_name = embedq(["collections", "create", "Bad Name"], worker_env)
    assert bad_name.returncode == 2 and "not a valid name" in bad_name.stderr.decode()
