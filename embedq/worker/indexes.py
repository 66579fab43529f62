"""Index versions in a worker: built and activated by builds and reindexes, loaded and searched by searches.

A build takes the collection's build lock (one build of a collection at a
time, fleet-wide), reserves the next version number, reads every live
document and its vector in one snapshot, builds the index (the kind by size
with ``auto``) and writes it as a versioned artifact (temporary folder,
manifest with the sha256 of every file, atomic rename). ``activate`` then
makes it the active version in the transaction that finishes the job, after
the lock is released, and refuses a version that another build overtook.

``IndexCache`` keeps the last few index versions a worker process searched
(LRU, ``index_cache`` of the settings), each verified against its manifest
when loaded; a collection that gets a new active version is picked up at its
next search, since searches look the active version up first. ``Delta``
follows the documents changed since that version was built (``seq`` above its
``max_seq``), reading only what changed since the last search.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg

from api_client.errors import RetriableError
from api_client.postprocess import truncate_and_normalize
from embedq.cores import index as index_core
from embedq.cores.artifacts import confined, folder_sha256, remove_stale_temps, verify_artifact, write_artifact
from embedq.worker.store import collections as collections_store
from embedq.worker.store.collections import Collection, Snapshot, StillMissing

if TYPE_CHECKING:
    from embedq.worker.runtime import Runtime
    from embedq.worker.store.jobs import Claim

log = logging.getLogger(__name__)

SNAPSHOT_ROUNDS = 5
"""Rounds of embedding what was written meanwhile before a reindex's snapshot gives up (and the job retries)."""


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class Built:
    """An index version written to disk, not yet active."""

    index_id: int
    version: int
    model_id: int
    path: Path
    params: dict[str, Any]
    snapshot: Snapshot
    sha256: str
    """The folder's sha256 (``folder_sha256``), recorded with the version: loading compares it."""
    vectors: np.ndarray
    """The snapshot's vectors as indexed (normalized where the collection is)."""
    index: Any

    @property
    def count(self) -> int:
        return len(self.snapshot.ids)


@contextmanager
def building(rt: Runtime, collection: Collection) -> Iterator[Collection]:
    """One build of a collection at a time, across the fleet (a session advisory lock, gone with the connection).

    Yields the collection as read under the lock: its model version is the one a build snapshots.
    """
    rt.indexes  # noqa: B018 (FAISS's threads and BLAS threshold are set with the index cache)
    collections_store.build_lock(rt.conn, collection.id)
    try:
        yield collections_store.get_collection(conn=rt.conn, name=collection.name)
    finally:
        try:
            collections_store.build_unlock(rt.conn, collection.id)
        except Exception as exc:  # the connection broke: the lock went with it
            log.warning("build lock of collection %s: %s", collection.name, exc)


def build(
    rt: Runtime,
    claim: Claim,
    collection: Collection,
    *,
    model_id: int,
    kind: str,
    params: dict[str, int] | None,
    embed_missing: Callable[[], int] | None = None,
) -> Built:
    """Reserve a version, snapshot, build and write the artifact of a new index of ``collection`` under ``model_id``.

    Call it inside ``building``. ``embed_missing`` (a reindex) embeds documents
    written meanwhile that have no vector under ``model_id`` yet.
    """
    root = rt.settings.artifacts
    remove_stale_temps(root, "index", collection.name)
    index_id, version = collections_store.reserve_index_version(
        conn=rt.conn, collection_id=collection.id, kind=kind, model_id=model_id, job_id=claim.output_id
    )
    try:
        return _build(rt, claim, collection, index_id, version, model_id, kind, params, embed_missing)
    except Exception as exc:  # the reserved version will never be ready: say so, then the job's error is raised
        try:
            error = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            collections_store.fail_index(conn=rt.conn, index_id=index_id, metrics=error)
        except psycopg.Error as db_exc:
            log.warning("index version %s of %s stays 'building': %s", version, collection.name, db_exc)
        raise


def _build(  # noqa: PLR0917 (build's own parameters, once reserved)
    rt: Runtime,
    claim: Claim,
    collection: Collection,
    index_id: int,
    version: int,
    model_id: int,
    kind: str,
    params: dict[str, int] | None,
    embed_missing: Callable[[], int] | None,
) -> Built:
    root = rt.settings.artifacts
    snapshot = _snapshot(rt, collection, model_id, embed_missing)
    vectors = snapshot.vectors
    if len(vectors):
        vectors = truncate_and_normalize(vectors, truncate_dim=None, normalize=collection.normalize)
    chosen = index_core.choose_kind(len(vectors), kind)
    if chosen != "flat" and len(vectors) == 0:
        chosen = "flat"
    dimension = vectors.shape[1] if len(vectors) else rt.collection_model(collection)[0].dimension
    matrix = vectors if len(vectors) else np.zeros((0, dimension), dtype=np.float32)
    index, used = index_core.build_index(matrix, chosen, params=params)

    def files(folder: Path) -> None:
        index_core.save_index(index, folder)
        (folder / "ids.json").write_text(json.dumps(snapshot.ids))
        np.save(folder / "seqs.npy", snapshot.seqs, allow_pickle=False)

    meta = {
        "collection": collection.name,
        "model_id": model_id,
        "normalize": collection.normalize,
        "count": len(snapshot.ids),
        "max_seq": snapshot.max_seq,
        "params": used,
        "job_id": claim.output_id,
    }
    path = write_artifact(root, "index", collection.name, str(version), files, meta)
    return Built(index_id, version, model_id, path, used, snapshot, folder_sha256(path), matrix, index)


def _snapshot(rt: Runtime, collection: Collection, model_id: int, embed_missing: Callable[[], int] | None) -> Snapshot:
    for _ in range(SNAPSHOT_ROUNDS):
        try:
            return collections_store.snapshot(conn=rt.conn, collection_id=collection.id, model_id=model_id)
        except StillMissing:
            if embed_missing is None:
                raise
            embed_missing()
    raise RetriableError(f"documents of {collection.name!r} kept changing while a reindex read them; retrying")


def activate(
    conn: psycopg.Connection,
    collection: Collection,
    built: Built,
    *,
    metrics: dict[str, Any],
    model: tuple[str, int] | None = None,
) -> None:
    """Make ``built`` the collection's active version, in the caller's transaction (the one finishing the job).

    With ``model`` (name, id), a reindex's swap: the collection and its
    documents move to that model version in the same transaction. Versions
    are numbered in the order builds take the build lock, but activated after
    it is released, so the collection row decides, locked here: a version
    older than the active one (a later build finished first), or a build of
    another model version than the collection's now (a reindex swapped
    meanwhile), would put a stale index in front of searches, and a swap
    while a live document has no vector under the new model (written since the
    reindex looked) would leave it unsearchable. Each is refused with a
    ``RetriableError``: the job runs again from a fresh snapshot.
    """
    locked = collections_store.get_collection(conn=conn, name=collection.name, lock="FOR UPDATE OF c")
    where = {"collection": collection.name, "index_version": built.version}
    if (locked.index_version or 0) > built.version:
        raise RetriableError(
            f"index version {locked.index_version} of {collection.name!r} became active while version "
            f"{built.version} was built; building again",
            detail={**where, "active_version": locked.index_version},
        )
    if model is None and locked.model_id != built.model_id:
        raise RetriableError(
            f"collection {collection.name!r} moved to model version {locked.model_id} while index version "
            f"{built.version} was built from version {built.model_id}; building again",
            detail={**where, "model_id": locked.model_id},
        )
    if model is not None and collections_store.missing_vectors(
        conn=conn, collection_id=locked.id, model_id=model[1], limit=1
    ):
        raise RetriableError(
            f"documents of {collection.name!r} were written while the reindex swapped; retrying", detail=where
        )
    collections_store.activate_index(
        conn=conn,
        collection_id=locked.id,
        index_id=built.index_id,
        path=str(built.path),
        sha256=built.sha256,
        params=built.params,
        count=built.count,
        max_seq=built.snapshot.max_seq,
        metrics=metrics,
        model=model,
    )


# ---------------------------------------------------------------- searching


@dataclass
class LoadedIndex:
    """An index version in memory: the FAISS index, and per label the document id and its seq at build time."""

    id: int
    index: Any
    ids: list[str]
    seqs: np.ndarray
    params: dict[str, Any]


def read_index(index_id: int, path: Path, params: dict[str, Any], sha256: str | None, root: Path) -> LoadedIndex:
    """Load an index artifact after checking that it lies under ``root``, that every file matches its manifest and
    that the folder hashes to ``sha256``, recorded when it was published (``ArtifactCorrupt`` if not)."""
    path = confined(root, path)
    verify_artifact(path, sha256=sha256)
    ids = json.loads((path / "ids.json").read_text())
    seqs = np.load(path / "seqs.npy", allow_pickle=False)
    return LoadedIndex(index_id, index_core.load_index(path / "index.faiss"), ids, seqs, params)


class IndexCache:
    """The index versions this process searched last, at most ``size``."""

    def __init__(self, size: int, root: Path) -> None:
        self.size = size
        self.root = root
        self._loaded: OrderedDict[int, LoadedIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, collection: Collection) -> LoadedIndex | None:
        """The collection's active index version, loaded once per process; ``None`` before its first build."""
        if collection.index_id is None or collection.index_path is None:
            return None
        with self._lock:
            loaded = self._loaded.get(collection.index_id)
            if loaded is None:
                loaded = read_index(
                    collection.index_id,
                    Path(collection.index_path),
                    collection.index_params,
                    collection.index_sha256,
                    self.root,
                )
                self._loaded[collection.index_id] = loaded
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(collection.index_id)
            return loaded


@dataclass
class Delta:
    """Documents of one collection changed since its active index version was built."""

    after_seq: int
    normalize: bool
    changed: dict[str, np.ndarray | None] = field(default_factory=dict)
    """Document id → its current raw vector, or ``None`` once deleted."""
    _matrix: tuple[list[str], np.ndarray] | None = None

    def refresh(self, conn: psycopg.Connection, collection_id: int) -> None:
        """Read what changed since the last refresh (usually nothing: one indexed query)."""
        changes = collections_store.changes_since(conn=conn, collection_id=collection_id, after_seq=self.after_seq)
        for change in changes:
            self.changed[change.external_id] = change.vector
            self.after_seq = max(self.after_seq, change.seq)
        if changes:
            self._matrix = None

    def live(self) -> tuple[list[str], np.ndarray]:
        """Ids and vectors (normalized when the collection is) of the changed documents that are not deleted."""
        if self._matrix is None:
            live = [(doc_id, vector) for doc_id, vector in self.changed.items() if vector is not None]
            ids = [doc_id for doc_id, _ in live]
            raw = [vector for _, vector in live]
            vectors = np.vstack(raw).astype(np.float32) if raw else np.zeros((0, 0), dtype=np.float32)
            if raw:
                vectors = truncate_and_normalize(vectors, truncate_dim=None, normalize=self.normalize)
            self._matrix = (ids, vectors)
        return self._matrix


class Deltas:
    """One ``Delta`` per (collection, active index version) searched by this process."""

    def __init__(self) -> None:
        self._deltas: dict[tuple[int, int | None], Delta] = {}
        self._lock = threading.Lock()

    def get(self, conn: psycopg.Connection, collection: Collection) -> Delta:
        key = (collection.id, collection.index_id)
        with self._lock:
            delta = self._deltas.get(key)
            if delta is None:
                for old in [k for k in self._deltas if k[0] == collection.id]:
                    del self._deltas[old]  # an older version's delta: the new one starts from its own build
                delta = Delta(after_seq=collection.index_max_seq, normalize=collection.normalize)
                self._deltas[key] = delta
            delta.refresh(conn, collection.id)
            return delta
