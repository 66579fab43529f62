"""Index artifacts under attack: tampered files are refused, a build killed mid-way leaves nothing half-written.

Each test runs a worker of its own on an isolated database and another Redis
db, with its artifact root in the test's tmp folder so the files can be seen.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from api_client import EmbedQ, JobStatus
from api_client.errors import ArtifactCorrupt
from api_client.settings import get_settings
from embedq.cores.artifacts import TMP_PREFIX, verify_artifact
from embedq.worker.stack import stop_worker
from tests import helpers

WAIT = 240


class Touch:
    """Unpickling this creates ``marker``: proof that something loaded the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def own_env(broker_url: str, database_url: str, root: Path) -> dict[str, str]:
    return helpers.worker_env(helpers.other_redis_db(broker_url), database_url, EMBEDQ_ARTIFACT_ROOT=str(root))


def documents(n: int) -> list[dict]:
    return [{"id": f"d{i:05d}", "text": text} for i, text in enumerate(helpers.banking_texts(n))]


def flip_byte(path: Path, offset: int) -> int:
    data = bytearray(path.read_bytes())
    original = data[offset]
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return original


def test_a_tampered_index_is_refused_and_no_pickle_is_loaded(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    env = own_env(broker_url, isolated_database, root)
    log = tmp_path / "worker.log"
    worker = helpers.start_worker(env, isolated_database, f"tamper-{uuid.uuid4().hex[:6]}@%h", log)
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        eq.create_collection("tickets")
        docs = documents(80)
        eq.upsert("tickets", docs).wait(timeout=WAIT)
        built = eq.build_index("tickets", kind="flat").result(timeout=WAIT)
        folder = Path(built["path"])
        assert folder.parent == (root / "index" / "tickets").resolve() and verify_artifact(folder)

        index_file = folder / "index.faiss"
        middle = index_file.stat().st_size // 2
        original = flip_byte(index_file, middle)  # before any search loaded this version
        with pytest.raises(ArtifactCorrupt, match=r"index\.faiss does not match its sha256") as refused:
            eq.search("tickets", [docs[3]["text"]], k=3).result(timeout=WAIT)
        assert refused.value.detail["file"] == "index.faiss"
        flip_byte(index_file, middle)
        assert index_file.read_bytes()[middle] == original

        marker = tmp_path / "unpickled"
        (folder / "evil.pkl").write_bytes(pickle.dumps(Touch(marker)))
        with pytest.raises(ArtifactCorrupt, match=r"evil\.pkl is not listed in the manifest") as unlisted:
            eq.search("tickets", [docs[3]["text"]], k=3).result(timeout=WAIT)
        assert unlisted.value.detail["file"] == "evil.pkl"
        with pytest.raises(ArtifactCorrupt, match="evil.pkl"):
            verify_artifact(folder)
        assert not marker.exists(), "something unpickled evil.pkl"

        (folder / "evil.pkl").unlink()  # the same folder, without the stranger, is searched again
        hits = eq.search("tickets", [docs[3]["text"]], k=3).result(timeout=WAIT)
        assert hits[0][0]["id"] == docs[3]["id"]
        assert not marker.exists()
    finally:
        eq.close()
        stop_worker(worker, timeout=30)


def building_version(database_url: str, collection: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM index_versions i JOIN collections c ON c.id = i.collection_id "
            "WHERE c.name = %s AND i.status = 'building'",
            (collection,),
        ).fetchone()
    return row is not None


def final_folders(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if not p.name.startswith(TMP_PREFIX)) if parent.is_dir() else []


def temp_folders(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith(TMP_PREFIX)) if parent.is_dir() else []


@pytest.mark.slow
def test_a_build_killed_mid_way_leaves_no_partial_version_and_is_rebuilt(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    parent = root / "index" / "tickets"
    env = own_env(broker_url, isolated_database, root)
    log = tmp_path / "workers.log"
    tag = uuid.uuid4().hex[:6]
    first = helpers.start_worker(env, isolated_database, f"build-first-{tag}@%h", log)
    second: subprocess.Popen | None = None
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        eq.create_collection("tickets")
        docs = documents(2000)
        assert eq.upsert("tickets", docs).result(timeout=WAIT)["changed"] == 2000
        job = eq.build_index("tickets", kind="hnsw", params={"efConstruction": 1000, "M": 128})

        # The version row is reserved as the build starts; the FAISS build that follows takes a second or more.
        helpers.wait_until(
            lambda: building_version(isolated_database, "tickets"),
            timeout=WAIT,
            interval=0.01,
            what="the build to start",
        )
        os.killpg(first.pid, signal.SIGKILL)  # the main process and its pool child, with no warning
        first.wait()
        assert job.status == JobStatus.RUNNING, "the build finished before the kill: nothing was tested"

        for folder in final_folders(parent):  # nothing half-written under a final name
            verify_artifact(folder)
        # What a writer killed during its write leaves (this kill landed before the write began).
        stale = parent / f"{TMP_PREFIX}killed-writer"
        stale.mkdir(parents=True, exist_ok=True)
        (stale / "index.faiss").write_bytes(b"\x00" * 100)

        second = helpers.start_worker(env, isolated_database, f"build-second-{tag}@%h", log)
        info = job.wait(timeout=WAIT)
        assert info.status == JobStatus.SUCCEEDED, (info.error, log.read_text(errors="replace")[-3000:])
        assert info.attempts == 2 and info.result is not None and info.result["kind"] == "hnsw"

        assert temp_folders(parent) == []
        finals = final_folders(parent)
        assert [folder.name for folder in finals] == [str(info.result["index_version"])]
        assert verify_artifact(finals[0])["meta"]["count"] == 2000
        active = eq.collection("tickets")["active_index"]
        assert active is not None and active["version"] == info.result["index_version"] and active["count"] == 2000
        with psycopg.connect(isolated_database, autocommit=True) as conn:
            versions = conn.execute("SELECT version, status FROM index_versions ORDER BY version").fetchall()
        assert versions == [(1, "failed"), (2, "ready")]  # the killed attempt's reservation does not stay 'building'
        hits = eq.search("tickets", [docs[42]["text"]], k=3).result(timeout=WAIT)
        assert hits[0][0]["id"] == docs[42]["id"]
    finally:
        eq.close()
        if first.poll() is None:
            stop_worker(first, timeout=30)
        if second is not None:
            stop_worker(second, timeout=30)
