"""Artifacts on disk: content hashes of model folders.

A model version is the sha256 over its folder: every file's relative path,
size and content, in path order. Two folders with the same files have the
same version; any changed byte makes a new one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_SKIP_DIRS = {"__pycache__", ".git", ".cache"}
_CHUNK = 1 << 20

_memo: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def _files(root: Path) -> list[tuple[str, Path]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for filename in filenames:
            path = Path(dirpath) / filename
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def folder_sha256(root: Path) -> str:
    """sha256 (hex) over the folder's files; memoized per process by path, size and mtime."""
    files = _files(root)
    stamp = tuple((rel, path.stat().st_size, path.stat().st_mtime_ns) for rel, path in files)
    key = (str(root.resolve()), stamp)
    if key not in _memo:
        digest = hashlib.sha256()
        for rel, path in files:
            digest.update(rel.encode() + b"\x00" + str(path.stat().st_size).encode() + b"\x00")
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        _memo[key] = digest.hexdigest()
    return _memo[key]
