"""examples/django_site: its management command and its view, each in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.examples.running import EXAMPLES, run_example

SITE = EXAMPLES / "django_site"
VIEW = """
import json, sys
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
for body in json.loads(sys.argv[1]):
    response = Client().post("/tickets/similar/", body, content_type="application/json")
    print(json.dumps({"status": response.status_code, **response.json()}))
"""


def test_embed_tickets_command_upserts_and_builds(example_env, eq, unique_name: str, tmp_path) -> None:
    tickets = tmp_path / "tickets.txt"
    tickets.write_text("my card was charged twice\nthe app crashes at login\n\nI want to close my account\n")
    out = run_example(["manage.py", "embed_tickets", str(tickets), "--collection", unique_name], example_env, cwd=SITE)

    assert f"3 tickets upserted into {unique_name}: 3 encoded, 0 from the cache, 3 new or changed" in out
    assert "index version 1 (flat): 3 documents" in out
    info = eq.collection(unique_name)
    assert info["size"] == 3 and info["active_index"]["count"] == 3
    hits = eq.search(unique_name, ["billed two times"], k=1).result(timeout=60)[0]
    assert hits[0]["id"] == "tickets.txt:1"

    refused = subprocess.run(
        [sys.executable, "manage.py", "embed_tickets", str(tickets), "--collection", "Not A Slug"],
        cwd=SITE,
        env=example_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "CommandError: BadRequest: collection: 'Not A Slug' is not a valid name" in refused.stderr


def test_similar_view_ranks_as_embedq_similarity(example_env, eq) -> None:
    text = "my card was charged twice"
    candidates = ["the app crashes at login", "I was billed two times", "close my account", "refund a double charge"]
    bodies = [{"text": text, "candidates": candidates}, {"text": " ", "candidates": candidates}, {"text": text}]
    env = {**example_env, "DJANGO_SETTINGS_MODULE": "desk.settings"}
    out = run_example(["-c", VIEW, json.dumps(bodies)], env, cwd=SITE)
    ranked, empty, malformed = (json.loads(line) for line in out.splitlines())

    scores = eq.similarity([text], candidates).result(timeout=60)[0]
    expected = [candidates[i] for i in np.argsort(-scores, kind="stable")]
    assert ranked["status"] == 200
    assert [hit["text"] for hit in ranked["ranked"]] == expected
    np.testing.assert_allclose([hit["score"] for hit in ranked["ranked"]], np.sort(scores)[::-1], atol=1e-6)
    assert empty == {"status": 400, "error": "queries[0]: the text is empty or only whitespace"}
    assert malformed["status"] == 400 and "candidates" in malformed["error"]
