from __future__ import annotations

import shutil
from pathlib import Path

from tasks.artifacts import folder_sha256


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
