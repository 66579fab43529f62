"""A search filter that matches no document says so, naming the metadata keys the documents have."""

from __future__ import annotations

import subprocess
import sys
import uuid

from tests import helpers


def test_a_filter_matching_nothing_is_said_in_the_summary_and_on_the_command_line(eq, db, worker_env) -> None:
    name = f"filters-{uuid.uuid4().hex[:8]}"
    eq.create_collection(name)
    documents = [
        {"id": "1", "text": "my card was declined", "metadata": {"team": "cards", "priority": 1}},
        {"id": "2", "text": "the app crashes on login", "metadata": {"team": "mobile"}},
    ]
    eq.upsert(name, documents).result(timeout=60)
    job = eq.search(name, ["card declined"], k=3, filter={"team": "Cards"})
    assert job.result(timeout=60) == [[]]
    summary = job.info().result
    assert summary["filter_matched"] == 0 and summary["metadata_keys"] == ["priority", "team"]
    found = eq.search(name, ["card declined"], k=3, filter={"team": "cards"})
    assert [hit["id"] for hit in found.result(timeout=60)[0]] == ["1"] and "filter_matched" not in found.info().result
    out = subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", "search", name, "card declined", "--filter", "team=Cards"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**helpers.env_without_embedq(), **worker_env},
    )
    assert out.returncode == 0 and out.stdout == ""
    assert f"no document of {name} matches the filter {{'team': 'Cards'}}" in out.stderr
    assert "the metadata keys of its documents: priority, team" in out.stderr
