"""The artifact disk full during an index build and a classifier's training: a clear error, nothing half-written
referenced or left behind, and the same jobs succeed once space is back.

The artifact root is a small tmpfs mounted for the test (root only); under CI
(``EMBEDQ_TEST_REQUIRE_MOUNT=1``) a machine that cannot mount one fails the
test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_client import EmbedQ
from api_client.errors import AttemptsExhausted
from api_client.settings import get_settings
from embedq.cores.artifacts import TMP_PREFIX, verify_artifact
from embedq.worker.stack import stop_worker
from tests import helpers

WAIT = 240


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        why = f"cannot mount a tmpfs for the artifact root: {done.stderr.strip() or done.returncode}"
        if os.environ.get("EMBEDQ_TEST_REQUIRE_MOUNT") == "1":
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def leftovers(root: Path) -> list[Path]:
    return list(root.rglob(f"{TMP_PREFIX}*"))


def test_a_full_artifact_disk_fails_builds_and_trainings_clearly_and_nothing_half_written_is_kept(
    isolated_database: str, broker_url: str, tmp_path: Path, small_disk: Path
) -> None:
    root = small_disk / "artifacts"
    env = helpers.worker_env(
        helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_ARTIFACT_ROOT=str(root), EMBEDQ_MAX_ATTEMPTS="1"
    )
    worker = helpers.start_worker(env, isolated_database, f"disk-{uuid.uuid4().hex[:6]}@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        docs = [{"id": f"d{i:03d}", "text": text} for i, text in enumerate(helpers.banking_texts(60))]
        eq.create_collection("tickets")
        eq.upsert("tickets", docs).wait(timeout=WAIT)
        rows = helpers.banking_labelled()[:80]
        texts, labels = [t for t, _ in rows], [label for _, label in rows]
        root.mkdir(parents=True, exist_ok=True)
        filler = fill(small_disk)

        for job in (
            eq.build_index("tickets", kind="flat"),
            eq.train_classifier("intents", texts, labels, method="logreg", eval_split=0.2),
        ):
            with pytest.raises(AttemptsExhausted, match="last error: DiskFull: no space left on the disk") as caught:
                job.result(timeout=WAIT)
            assert caught.value.detail["last_error"]["retriable"] is True
        assert leftovers(root) == []
        assert eq.collection("tickets")["active_index"] is None
        with eq._pool.connection() as conn:
            assert conn.execute("SELECT status, artifact_path FROM index_versions").fetchall() == [("failed", None)]
            assert conn.execute("SELECT count(*) FROM classifier_versions").fetchone()[0] == 0

        filler.unlink()  # space is back: the same requests succeed
        built = eq.build_index("tickets", kind="flat").result(timeout=WAIT)
        assert verify_artifact(Path(built["path"]))["meta"]["count"] == 60
        assert eq.search("tickets", [docs[7]["text"]], k=1).result(timeout=WAIT)[0][0]["id"] == docs[7]["id"]
        report = eq.train_classifier("intents", texts, labels, method="logreg", eval_split=0.2).result(timeout=WAIT)
        assert report["version"] == 1
        assert eq.classify("intents", texts[:3]).result(timeout=WAIT)[0]["label"] in set(labels)
        assert leftovers(root) == []
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
