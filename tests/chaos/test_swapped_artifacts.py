"""Artifacts swapped on disk: a file rewritten together with its manifest, or a row pointing out of the root.

A manifest catches a torn or flipped file; an attacker who can write the
artifact root can rewrite the manifest too. What PostgreSQL recorded when the
version was published (its folder's sha256, its path under the root) is what a
worker compares before it loads anything, so a swapped index, classifier or
fine-tuned model is refused with ``ArtifactCorrupt`` and never served.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path

import pytest

from api_client import EmbedQ
from api_client.errors import ArtifactCorrupt
from api_client.settings import get_settings
from embedq.cores.artifacts import MANIFEST, verify_artifact
from embedq.worker.stack import stop_worker
from tests import helpers

WAIT = 240
SWAPPED = "does not match the sha256 recorded when it was published"


def rewrite(folder: Path, rel: str, data: bytes) -> None:
    """Replace ``folder/rel`` and fix its manifest entry, as an attacker with write access would."""
    (folder / rel).write_bytes(data)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][rel] = hashlib.sha256(data).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert verify_artifact(folder)  # consistent with its own manifest: only the recorded sha256 tells


@pytest.fixture
def stack(isolated_database: str, broker_url: str, tmp_path: Path):
    root = tmp_path / "artifacts"
    env = helpers.worker_env(
        helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_ARTIFACT_ROOT=str(root), EMBEDQ_MAX_ATTEMPTS="2"
    )
    worker = helpers.start_worker(env, isolated_database, f"swap-{uuid.uuid4().hex[:6]}@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        yield eq, root
    finally:
        eq.close()
        stop_worker(worker, timeout=30)


def test_a_swapped_index_or_one_outside_the_root_is_never_searched(stack, tmp_path: Path) -> None:
    eq, _ = stack
    docs = [{"id": f"d{i:03d}", "text": text} for i, text in enumerate(helpers.banking_texts(40))]
    eq.create_collection("tickets")
    eq.upsert("tickets", docs).wait(timeout=WAIT)
    folder = Path(eq.build_index("tickets", kind="flat").result(timeout=WAIT)["path"])
    original = (folder / "ids.json").read_bytes()

    # The ids reversed: every hit would name another document. Manifest rewritten to match.
    rewrite(folder, "ids.json", json.dumps(list(reversed(json.loads(original)))).encode())
    with pytest.raises(ArtifactCorrupt, match=SWAPPED):
        eq.search("tickets", [docs[3]["text"]], k=1).result(timeout=WAIT)

    rewrite(folder, "ids.json", original)  # the published files again: searched
    assert eq.search("tickets", [docs[3]["text"]], k=1).result(timeout=WAIT)[0][0]["id"] == docs[3]["id"]

    # A row naming a folder outside the root (an identical copy, even) is refused before any file is read.
    outside = tmp_path / "elsewhere" / "1"
    shutil.copytree(folder, outside)
    eq.build_index("tickets", kind="flat").wait(timeout=WAIT)  # a new version, which the next search loads
    with eq._pool.connection() as conn:
        conn.execute(
            "UPDATE index_versions SET artifact_path = %s WHERE status = 'ready' AND version = 2", (str(outside),)
        )
    with pytest.raises(ArtifactCorrupt, match="outside the artifact root"):
        eq.search("tickets", [docs[3]["text"]], k=1).result(timeout=WAIT)


def test_a_swapped_classifier_head_is_never_served(stack) -> None:
    eq, _ = stack
    rows = helpers.banking_labelled()[:120]
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    report = eq.train_classifier("intents", texts, labels, method="logreg", eval_split=0.2).result(timeout=WAIT)
    with eq._pool.connection() as conn:
        folder = Path(conn.execute("SELECT artifact_path FROM classifier_versions").fetchone()[0])
    head = json.loads((folder / "head.json").read_text())
    head["labels"] = list(reversed(head["labels"]))  # every prediction would name another label
    rewrite(folder, "head.json", json.dumps(head).encode())
    with pytest.raises(ArtifactCorrupt, match=SWAPPED):
        eq.classify("intents", texts[:2]).result(timeout=WAIT)
    assert report["version"] == 1


@pytest.mark.slow
def test_a_swapped_fine_tuned_model_is_never_served(stack) -> None:
    eq, root = stack
    texts = helpers.banking_texts(16)
    pairs = [[texts[i], texts[i + 1]] for i in range(0, 16, 2)]
    result = eq.fine_tune(
        "all-MiniLM-L6-v2", pairs, loss="mnrl", name="tuned", params={"epochs": 1, "batch_size": 4}
    ).result(timeout=WAIT)
    model_folder = Path(result["artifact_path"])
    assert model_folder.resolve().is_relative_to(root.resolve())
    assert eq.encode(["before the swap"], model="tuned").result(timeout=WAIT).shape == (1, 384)

    rewrite(model_folder.parent, "model/config_sentence_transformers.json", b'{"prompts": {"query": "swapped: "}}')
    time.sleep(11)  # past the worker's trust in the folder's last hash (HASH_TTL)
    with pytest.raises(ArtifactCorrupt, match=SWAPPED):
        eq.encode(["after the swap"], model="tuned").result(timeout=WAIT)
