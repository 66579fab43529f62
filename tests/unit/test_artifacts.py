from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api_client.errors import ArtifactCorrupt, BadRequest
from embedq.cores.artifacts import SLUG, check_slug, folder_sha256, remove_stale_temps, verify_artifact, write_artifact

ROOT = Path(__file__).resolve().parents[2]


def test_model_version_follows_content(tmp_path: Path) -> None:
    first = tmp_path / "a"
    (first / "sub").mkdir(parents=True)
    (first / "weights.bin").write_bytes(b"\x00" * 100)
    (first / "sub" / "config.json").write_text("{}")
    copy = tmp_path / "b"
    shutil.copytree(first, copy)
    assert folder_sha256(first) == folder_sha256(copy)

    (copy / "weights.bin").write_bytes(b"\x00" * 99 + b"\x01")
    assert folder_sha256(copy) != folder_sha256(first)

    (copy / "weights.bin").write_bytes(b"\x00" * 100)
    (copy / "sub" / "config.json").rename(copy / "config.json")
    assert folder_sha256(copy) != folder_sha256(first)


# ---------------------------------------------------------------- the artifact store


def _write_two_files(folder: Path) -> None:
    (folder / "index.faiss").write_bytes(b"\x01\x02\x03" * 100)
    (folder / "sub").mkdir()
    (folder / "sub" / "ids.npy").write_bytes(b"ids")


def _store(root: Path, version: str = "3") -> Path:
    return write_artifact(root, "index", "support-faq", version, _write_two_files, {"source": "test", "n": 300})


def test_write_then_verify(tmp_path: Path) -> None:
    path = _store(tmp_path)
    assert path == (tmp_path / "index" / "support-faq" / "3").resolve()
    manifest = verify_artifact(path)
    assert manifest["kind"] == "index" and manifest["name"] == "support-faq" and manifest["version"] == "3"
    assert manifest["meta"] == {"source": "test", "n": 300}
    assert manifest["files"] == {
        "index.faiss": hashlib.sha256(b"\x01\x02\x03" * 100).hexdigest(),
        "sub/ids.npy": hashlib.sha256(b"ids").hexdigest(),
    }
    assert dt.datetime.fromisoformat(manifest["created_at"]).utcoffset() == dt.timedelta(0)
    assert json.loads((path / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in path.parent.iterdir()) == ["3"]  # no temporary folder left


def test_one_changed_byte_is_named(tmp_path: Path) -> None:
    path = _store(tmp_path)
    data = bytearray((path / "sub" / "ids.npy").read_bytes())
    data[0] ^= 1
    (path / "sub" / "ids.npy").write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupt, match="sub/ids.npy") as caught:
        verify_artifact(path)
    assert caught.value.detail == {"file": "sub/ids.npy", "path": str(path)}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda p: (p / "extra.bin").write_bytes(b"x"), "extra.bin"),
        (lambda p: (p / "index.faiss").unlink(), "index.faiss"),
        (lambda p: (p / "link").symlink_to(p / "index.faiss"), "link"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "manifest.json"),
        (lambda p: shutil.copytree(p, p.parent / "4"), "manifest.json"),  # a manifest in another version's folder
    ],
    ids=["extra-file", "missing-file", "link", "bad-manifest", "copied-version"],
)
def test_anything_off_the_manifest_is_refused(tmp_path: Path, change: Any, named: str) -> None:
    path = _store(tmp_path)
    change(path)
    target = path.parent / "4" if (path.parent / "4").exists() else path
    with pytest.raises(ArtifactCorrupt, match=named) as caught:
        verify_artifact(target)
    assert caught.value.detail["file"] == named


def test_a_version_is_never_overwritten(tmp_path: Path) -> None:
    path = _store(tmp_path)
    before = (path / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError):
        _store(tmp_path)
    assert (path / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["3"]
    assert _store(tmp_path, "v4").name == "v4"


def test_a_failing_writer_leaves_nothing(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_artifact(tmp_path, "index", "faq", "1", broken, {})
    assert list((tmp_path / "index" / "faq").iterdir()) == []


def test_a_writer_may_not_make_links_or_its_own_manifest(tmp_path: Path) -> None:
    for write in (
        lambda folder: (folder / "escape").symlink_to("/etc/hostname"),
        lambda folder: (folder / "manifest.json").write_text("{}"),
    ):
        with pytest.raises(ValueError, match="plain files only"):
            write_artifact(tmp_path, "index", "faq", "1", write, {})
    assert list((tmp_path / "index" / "faq").iterdir()) == []


def test_a_killed_writer_leaves_only_a_temp_folder(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from embedq.cores.artifacts import write_artifact\n"
        "def write(folder):\n"
        "    (folder / 'index.faiss').write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "write_artifact(Path(sys.argv[1]), 'index', 'faq', '1', write, {})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    parent = tmp_path / "index" / "faq"
    assert not (parent / "1").exists()
    [temp] = parent.iterdir()
    assert temp.name.startswith(".tmp-") and (temp / "index.faiss").exists()

    assert remove_stale_temps(tmp_path, "index", "faq") == [temp.resolve()]
    assert list(parent.iterdir()) == []
    assert verify_artifact(write_artifact(tmp_path, "index", "faq", "1", _write_two_files, {}))["version"] == "1"
    assert remove_stale_temps(tmp_path, "index", "faq") == []
    assert remove_stale_temps(tmp_path, "index", "never-written") == []


@pytest.mark.parametrize("bad", ["", "..", ".", "a/b", "../escape", "Upper", "a b", ".tmp-x", "-lead", "x" * 64, "é"])
@pytest.mark.parametrize("field", ["kind", "name", "version"])
def test_names_are_slugs(tmp_path: Path, bad: str, field: str) -> None:
    parts = {"kind": "index", "name": "faq", "version": "1", field: bad}
    with pytest.raises(BadRequest, match=field) as caught:
        write_artifact(tmp_path, parts["kind"], parts["name"], parts["version"], _write_two_files, {})
    assert caught.value.detail["field"] == field
    assert list(tmp_path.iterdir()) == []


def test_check_slug() -> None:
    for good in ["3", "v3", "support-faq", "a_b-9", "x" * 63]:
        assert check_slug(good, "name") == good
    with pytest.raises(BadRequest, match="collection"):
        check_slug("Support FAQ", "collection")
    assert SLUG == r"^[a-z0-9][a-z0-9_-]{0,62}$"


def test_a_linked_folder_cannot_lead_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "index").mkdir(parents=True)
    outside.mkdir()
    (root / "index" / "faq").symlink_to(outside)
    with pytest.raises(BadRequest, match="leaves the root"):
        write_artifact(root, "index", "faq", "1", _write_two_files, {})
    assert list(outside.iterdir()) == []
