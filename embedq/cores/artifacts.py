"""Artifacts on disk: content hashes of model folders, and the versioned artifact store.

A model version is the sha256 over its folder: every file's relative path,
size and content, in path order. Two folders with the same files have the
same version; any changed byte makes a new one.

The store (DESIGN §5) keeps ``root/<kind>/<name>/<version>/`` folders, each
with a ``manifest.json`` recording what it is, from which inputs (``meta``)
and the sha256 of every file. A version is written into a ``.tmp-*`` folder
beside it, synced, then renamed into place, so a reader sees a whole version
or none; versions are never overwritten. Loading verifies every hash first.
Nothing here unpickles.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api_client.errors import ArtifactCorrupt, BadRequest

_SKIP_DIRS = {"__pycache__", ".git", ".cache"}
_CHUNK = 1 << 20

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"

_SLUG = re.compile(SLUG)
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


def _header(rel: str, size: int) -> bytes:
    return rel.encode() + b"\x00" + str(size).encode() + b"\x00"


def _read_into(path: Path, *digests: Any) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            for digest in digests:
                digest.update(chunk)


def _hashed(rel: str) -> bool:
    """Whether ``rel`` counts towards a folder's sha256 (caches and VCS folders do not)."""
    return not set(rel.split("/")[:-1]) & _SKIP_DIRS


def folder_sha256(root: Path) -> str:
    """sha256 (hex) over the folder's files; memoized per process by path, size and mtime."""
    files = _files(root)
    stamp = tuple((rel, path.stat().st_size, path.stat().st_mtime_ns) for rel, path in files)
    key = (str(root.resolve()), stamp)
    if key not in _memo:
        digest = hashlib.sha256()
        for rel, path in files:
            digest.update(_header(rel, path.stat().st_size))
            _read_into(path, digest)
        _memo[key] = digest.hexdigest()
    return _memo[key]


# ---------------------------------------------------------------- the artifact store


def check_slug(name: str, field: str) -> str:
    """Return ``name`` if it matches ``SLUG``, else raise BadRequest naming ``field``."""
    if not isinstance(name, str) or not _SLUG.fullmatch(name):
        raise BadRequest(
            f"{field} must be a slug (lowercase letters, digits, '_' and '-', starting with a letter or digit, "
            f"at most 63 characters): {name!r}",
            detail={"field": field, "value": str(name)[:100]},
        )
    return name


def _under(root: Path, *parts: str) -> Path:
    """``root/parts...`` resolved, refused unless it stays under the resolved root (a symlink could lead out)."""
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or path == base:
        raise BadRequest(f"artifact path leaves the root: {'/'.join(parts)}", detail={"root": str(root)})
    return path


def _slug_path(root: Path, kind: str, name: str) -> Path:
    return _under(root, check_slug(kind, "kind"), check_slug(name, "name"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _read_into(path, digest)
    return digest.hexdigest()


def _tree(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """``({relative path: file}, [relative paths that are not plain files or folders])``; links are never followed."""
    files: dict[str, Path] = {}
    odd: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for entry in [*dirnames, *filenames]:
            path = base / entry
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                odd.append(rel)
            elif path.is_file():
                files[rel] = path
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return dict(sorted(files.items())), sorted(odd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_artifact(  # noqa: PLR0917 (the signature the runners call positionally)
    root: Path, kind: str, name: str, version: str, write: Callable[[Path], None], meta: dict[str, Any]
) -> Path:
    """Write one artifact version atomically and return its folder ``root/kind/name/version``.

    ``write(tmpdir)`` puts the files into a fresh ``.tmp-*`` folder beside the final one; then the
    manifest is added, everything is fsynced and the folder renamed into place. Any exception
    (from ``write`` too) removes the temporary folder. ``meta`` must be JSON.

    Raises:
        BadRequest: a part is not a slug, or the path would leave ``root``.
        FileExistsError: this version exists already (versions are never overwritten).
        ValueError: ``write`` made a link, a special file or its own ``manifest.json``.
    """
    parent = _slug_path(root, kind, name)
    final = _under(root, kind, name, check_slug(version, "version"))
    if final.exists():
        raise FileExistsError(f"artifact {kind}/{name}/{version} exists already: {final}")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
    try:
        write(tmp)
        files, odd = _tree(tmp)
        if odd or MANIFEST in files:
            raise ValueError(f"an artifact holds plain files only, and no {MANIFEST} of its own: {odd or [MANIFEST]}")
        manifest = {
            "kind": kind,
            "name": name,
            "version": version,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "meta": meta,
            "files": {rel: _sha256(path) for rel, path in files.items()},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n")
        for path in [*files.values(), tmp / MANIFEST]:
            _fsync(path)
        for dirpath, _, _ in os.walk(tmp, topdown=False):
            _fsync(Path(dirpath))
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(f"artifact {kind}/{name}/{version} exists already: {final}") from e
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(parent)
    return final


def _corrupt(path: Path, rel: str, why: str) -> ArtifactCorrupt:
    return ArtifactCorrupt(f"artifact file {rel} {why} (in {path})", detail={"file": rel, "path": str(path)})


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(path, MANIFEST, f"cannot be read: {e}") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise _corrupt(path, MANIFEST, "has no 'files' mapping")
    expected = {"kind": path.parent.parent.name, "name": path.parent.name, "version": path.name}
    if any(manifest.get(key) != value for key, value in expected.items()):
        raise _corrupt(path, MANIFEST, f"describes another artifact than its folder {expected}")
    return manifest


def confined(root: Path, path: Path | str) -> Path:
    """``path`` resolved, refused unless it lies under the resolved ``root`` (database rows name artifact folders;
    a row or a link pointing elsewhere must never be loaded).

    Raises:
        ArtifactCorrupt: the path (after following links) leaves ``root``.
    """
    base = root.resolve()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(base) or resolved == base:
        raise ArtifactCorrupt(
            f"artifact path {path} lies outside the artifact root {base}; it is not loaded",
            detail={"path": str(path), "root": str(base)},
        )
    return resolved


def verify_artifact(path: Path, *, sha256: str | None = None) -> dict[str, Any]:
    """Check every file of a version folder against its manifest and return the manifest.

    With ``sha256``, the folder must also hash (``folder_sha256``) to that value, the one recorded
    in PostgreSQL when the version was published: a file rewritten together with its manifest is
    refused too. Callers loading a folder a database row names check it with ``confined`` first.

    Raises:
        ArtifactCorrupt: the manifest is unreadable or names another folder, a listed file is missing
            or its sha256 differs, a file (or link) the manifest does not list is present, the folder
            does not hash to ``sha256``; ``detail["file"]`` names the file.
    """
    manifest = _read_manifest(path)
    present, odd = _tree(path)
    if odd:
        raise _corrupt(path, odd[0], "is not a plain file")
    missing = sorted(set(manifest["files"]) - set(present))
    if missing:
        raise _corrupt(path, missing[0], "is missing")
    extra = sorted(set(present) - set(manifest["files"]) - {MANIFEST})
    if extra:
        raise _corrupt(path, extra[0], "is not listed in the manifest")
    folder = hashlib.sha256()
    for rel, file in present.items():
        each = hashlib.sha256()
        if sha256 is not None and _hashed(rel):  # the folder's digest, in the same read, only when compared
            folder.update(_header(rel, file.stat().st_size))
            _read_into(file, each, folder)
        else:
            _read_into(file, each)
        if rel != MANIFEST and each.hexdigest() != manifest["files"][rel]:
            raise _corrupt(path, rel, "does not match its sha256")
    if sha256 is not None and folder.hexdigest() != sha256:
        raise ArtifactCorrupt(
            f"artifact {path} does not match the sha256 recorded when it was published "
            f"({folder.hexdigest()[:12]}, recorded {sha256[:12]}): its files were replaced; it is not loaded",
            detail={"path": str(path), "sha256": folder.hexdigest(), "recorded": sha256},
        )
    return manifest


def remove_stale_temps(root: Path, kind: str, name: str) -> list[Path]:
    """Delete the ``.tmp-*`` folders a killed writer left under ``root/kind/name``; returns what was removed.

    The caller must be the only writer of this name (the runners hold the build's lock), since a
    live writer's temporary folder looks the same.
    """
    parent = _slug_path(root, kind, name)
    removed = []
    for path in sorted(parent.glob(f"{TMP_PREFIX}*")) if parent.is_dir() else []:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(path)
    return removed
