"""Per-process state for search: loaded index versions and the delta of each collection.

``IndexCache`` keeps the last few index versions a worker process searched
(LRU, ``index_cache`` of the settings), each verified against its manifest
when loaded; a collection that gets a new active version is picked up at its
next search, since searches look the active version up first. ``Delta``
follows the documents changed since that version was built (``seq`` above its
``max_seq``), reading only what changed since the last search.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from api_client.postprocess import truncate_and_normalize
from embedq.cores.artifacts import verify_artifact
from embedq.cores.index import load_index
from embedq.worker.store import collections as collections_store
from embedq.worker.store.collections import Collection


@dataclass
class LoadedIndex:
    """An index version in memory: the FAISS index, and per label the document id and its seq at build time."""

    id: int
    index: Any
    ids: list[str]
    seqs: np.ndarray
    params: dict[str, Any]


def read_index(index_id: int, path: Path, params: dict[str, Any]) -> LoadedIndex:
    """Load an index artifact after checking every file against its manifest (``ArtifactCorrupt`` if not)."""
    verify_artifact(path)
    ids = json.loads((path / "ids.json").read_text())
    seqs = np.load(path / "seqs.npy", allow_pickle=False)
    return LoadedIndex(index_id, load_index(path / "index.faiss"), ids, seqs, params)


class IndexCache:
    """The index versions this process searched last, at most ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._loaded: OrderedDict[int, LoadedIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, collection: Collection) -> LoadedIndex | None:
        """The collection's active index version, loaded once per process; ``None`` before its first build."""
        if collection.index_id is None or collection.index_path is None:
            return None
        with self._lock:
            loaded = self._loaded.get(collection.index_id)
            if loaded is None:
                loaded = read_index(collection.index_id, Path(collection.index_path), collection.index_params)
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
