"""Per-process resources of a worker child: one database connection, one model registry.

Created on first use inside the child (never at import, never before the
fork), and rebuilt when the connection breaks. ``Runtime.model`` also picks
the backend each model version runs on (``embedq.worker.backends``): the request's,
else (``auto``) the one promoted for the version fleet-wide, torch while none is.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import replace
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from api_client.backends import requested
from api_client.errors import ArtifactCorrupt, ModelMismatch, UnknownModel
from api_client.settings import Settings, get_settings
from api_client.store import models as models_read
from api_client.store.models import ModelRow
from embedq.cores.artifacts import verify_artifact
from embedq.cores.models import LoadedModel, ModelRegistry, resolve_path
from embedq.worker.backends import Backends, Choice, Target
from embedq.worker.db import reopen
from embedq.worker.lease import LeaseKeeper, Progress
from embedq.worker.metrics import metrics
from embedq.worker.store import backends as backends_store
from embedq.worker.store import jobs as jobs_store
from embedq.worker.store import models as models_store
from embedq.worker.store.jobs import Claim

if TYPE_CHECKING:
    from embedq.cores.rerank import CrossEncoders
    from embedq.worker.indexes import Deltas, IndexCache
    from embedq.worker.store.collections import Collection

log = logging.getLogger(__name__)


class Runtime:
    """What tasks in this process share. ``lock`` serializes their use of it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hardware = settings.hardware
        self.lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        cores = len(os.sched_getaffinity(0))
        self.threads = settings.torch_threads or max(1, cores // settings.concurrency)
        self.registry = ModelRegistry(device="cuda" if self.hardware == "gpu" else "cpu", threads=self.threads)
        self.backends = Backends(settings)
        self._rows: dict[tuple[str, str], tuple[float, Target, Choice, int]] = {}
        self.current_progress: Progress | None = None
        self._timed: set[int] = set()
        self._published: set[tuple[Path, str]] = set()
        """Published model folders (and their sha256) whose manifest this process checked already."""
        self.job_backends: set[str] = set()
        """The backends that computed vectors for the job in hand (its summary names them)."""
        self.keeper = LeaseKeeper(settings.require_database(), f"embedq-lease {self.name}", settings.lease_seconds)

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}/{os.getpid()}"

    @property
    def conn(self) -> psycopg.Connection:
        """The process's connection, reopened if it was closed or broken."""
        self._conn = reopen(self._conn, self.settings.require_database(), application_name=f"embedq-worker {self.name}")
        return self._conn

    @cached_property
    def indexes(self) -> IndexCache:
        """Index versions loaded in this process (FAISS configured on first use)."""
        from embedq.cores.index import configure
        from embedq.worker.indexes import IndexCache

        configure(threads=None if self.hardware == "gpu" else self.threads)
        return IndexCache(self.settings.index_cache, self.settings.artifacts)

    @cached_property
    def cross_encoders(self) -> CrossEncoders:
        from embedq.cores.rerank import CrossEncoders

        return CrossEncoders(device="cuda" if self.hardware == "gpu" else "cpu")

    def cross_encoder(self, name: str) -> Any:
        """The cross-encoder registered as ``name`` (``UnknownModel`` if there is none)."""
        self._set_threads()
        row = models_read.resolve_model(conn=self.conn, name=name)
        if row is None or row.kind != "cross-encoder" or not row.registered:
            raise UnknownModel(
                f"rerank: {name!r} is not a registered cross-encoder", detail={"field": "rerank", "model": name}
            )
        return self.cross_encoders.load(name, Path(row.artifact_path))[1]

    @cached_property
    def deltas(self) -> Deltas:
        """The delta of each collection this process searched."""
        from embedq.worker.indexes import Deltas

        return Deltas()

    def progress(self, claim: Claim, *, total: int, done: int) -> Progress:
        """Progress reports for ``claim`` on this process's connection (kept as ``current_progress``)."""
        self.current_progress = Progress(
            conn=self.conn,
            claim=claim,
            total=total,
            done=done,
            lease_seconds=self.settings.lease_seconds,
            interval=self.settings.progress_interval,
        )
        return self.current_progress

    def reset_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @property
    def dtype(self) -> str:
        """What the models compute in here: float16 on a GPU, float32 on a CPU."""
        return "float16" if self.hardware == "gpu" else "float32"

    def model(self, name: str, backend: str | None = None) -> tuple[LoadedModel, int]:
        """The loaded model and its ``models`` row id (recorded on first use of each version, dtype and backend).

        The name resolves as the client resolves it (``models_read.resolve_model``):
        a version registered with ``embedq models add`` wins over a bundled
        package of the same name. ``backend`` is the request's; ``None`` or
        ``auto`` is the backend promoted for the version fleet-wide
        (``embedq.worker.backends``), torch while none is. The choice and the row
        are looked up again at most every ``model_recheck`` seconds, so a promotion
        reaches every worker within that time; each job resolves once.
        """
        self._set_threads()
        wanted = backend or "auto"
        if self.hardware == "gpu" and wanted == "auto":
            wanted = "torch"
        cached = self._rows.get((name, wanted))
        if cached is not None and time.monotonic() - cached[0] < self.settings.model_recheck:
            _, target, choice, row_id = cached
            if self.registry.sha256(target.source) == target.sha256:  # else the files changed: a new version
                self.job_backends.add(choice.backend)
                return self._load(target, choice), row_id
        resolved = models_read.resolve_model(conn=self.conn, name=name)
        registered = resolved if resolved is not None and resolved.registered else None
        path = resolve_path(name, registered.artifact_path if registered is not None else None)
        source = "registered" if registered is not None else "bundled"
        target = Target(name, path, source, self.registry.sha256(path), "torch")
        if registered is not None:
            self._check_published(registered, target)
        choice = self.backends.choose(self.conn, target, wanted)
        loaded = self._load(target, choice)
        row = record_model(
            self.conn,
            name,
            choice.artifact if choice.artifact is not None else path,
            loaded,
            dtype=self.dtype,
            backend=loaded.backend,
            source=source,
        )
        self._rows[(name, wanted)] = (time.monotonic(), target, choice, row.id)
        self.job_backends.add(loaded.backend)
        return loaded, row.id

    def _check_published(self, registered: ModelRow, target: Target) -> None:
        """A model embedq published itself (a fine-tune, under the artifact root) is served only as the files it
        registered: its folder must still match its manifest and hash to the registered sha256. A folder a user
        registered elsewhere is theirs to change; a change makes a new version."""
        source = target.source.resolve()
        if not source.is_relative_to(self.settings.artifacts.resolve()):
            return
        if (source, target.sha256) not in self._published:  # read once per version, not at every re-resolve
            verify_artifact(source.parent)
            self._published.add((source, target.sha256))
        if target.sha256 != registered.sha256:
            raise ArtifactCorrupt(
                f"model {target.name!r} at {target.source} does not match the sha256 recorded when it was published "
                f"({target.sha256[:12]}, recorded {registered.sha256[:12]}): its files were replaced; it is not loaded",
                detail={"model": target.name, "path": str(target.source), "recorded": registered.sha256},
            )

    def _load(self, target: Target, choice: Choice) -> LoadedModel:
        """Load ``choice`` (its first load timed in the metrics); files that fail their manifest are rebuilt while
        the job waits, then loaded."""
        loaded = self._registry_load(target, choice)
        if id(loaded) not in self._timed:
            self._timed.add(id(loaded))
            found = metrics()
            if found is not None and loaded.load_seconds:
                found.model_load.labels(loaded.backend).observe(loaded.load_seconds)
        return loaded

    def _registry_load(self, target: Target, choice: Choice) -> LoadedModel:
        try:
            return self.registry.load(target.name, target.source, backend=choice.backend, artifact=choice.artifact)
        except ArtifactCorrupt as exc:
            if choice.artifact is None:
                raise
            log.warning(
                "%s: rebuilding the %s files of %s while the job waits", exc.message, choice.backend, target.name
            )
            folder = self.backends.verified(self.conn, replace(target, backend=choice.backend), rebuild=True)
            return self.registry.load(target.name, target.source, backend=choice.backend, artifact=folder)

    def job_model(
        self, claim: Claim, name: str, backend: str | None = None, *, parent: bool = False
    ) -> tuple[LoadedModel, int]:
        """The model of a job: ``model(name, backend)``, except that a chunked job's chunks (and, with
        ``parent``, the parent itself) all compute with the version, hence the backend, that the first of
        them pinned on the parent: a promotion while the job runs cannot mix two backends in it."""
        loaded, model_id = self.model(name, backend)
        family = claim.parent_id or (claim.job_id if parent else None)
        if family is None:
            return loaded, model_id
        pinned = jobs_store.pin_model(conn=self.conn, job_id=family, model_id=model_id)
        if pinned == model_id:
            return loaded, model_id
        loaded, row_id = self.bound_model(name, pinned, owner=f"job {family}")
        if row_id != pinned:
            raise ModelMismatch(
                f"job {family} computes with model version {pinned}, but {name!r} now resolves to version "
                f"{loaded.sha256[:12]}: its files changed while the job ran",
                detail={"model_id": pinned, "resolved": row_id},
            )
        return loaded, row_id

    def collection_model(
        self, collection: Collection, backend: str | None = None, *, claim: Claim | None = None
    ) -> tuple[LoadedModel, int]:
        """The model of a collection's jobs: its bound version and backend; before it is bound (its first
        upsert), the job's (``job_model`` of ``claim``, so the chunks of that upsert agree)."""
        if collection.model_id is None and claim is not None:
            return self.job_model(claim, collection.model, backend)
        return self.bound_model(collection.model, collection.model_id, backend, owner=f"collection {collection.name!r}")

    def bound_model(
        self, name: str, model_id: int | None, backend: str | None = None, *, owner: str = "this job"
    ) -> tuple[LoadedModel, int]:
        """The model for vectors that must match version ``model_id`` (a collection's, a classifier's).

        Unbound (``None``), it is ``model(name, backend)``. Bound, it computes
        with the backend of that version's row, so its vectors keep comparing
        with the stored ones; a request that names another backend gets
        ``ModelMismatch``.
        """
        bound = None if model_id is None else backends_store.row_backend(conn=self.conn, model_id=model_id)
        if bound is None:
            return self.model(name, backend)
        if backend not in (None, "auto") and backend != requested(bound):
            raise ModelMismatch(
                f"{owner} holds vectors of backend {bound}; a job on it cannot use {backend!r}",
                detail={"model_id": model_id, "backend": backend, "bound": bound},
            )
        return self.model(name, requested(bound))

    def _set_threads(self) -> None:
        """Intra-op threads: ``EMBEDQ_TORCH_THREADS``, else this process's share of the usable cores.

        Set from the calling thread each time (OpenMP keeps the setting per
        thread; the call costs well under a microsecond).
        """
        if self.hardware == "gpu":
            return
        import torch

        torch.set_num_threads(self.threads)


def record_model(
    conn: psycopg.Connection,
    name: str,
    path: Path,
    loaded: LoadedModel,
    *,
    dtype: str,
    source: str,
    backend: str = "torch",
    register: bool = False,
) -> ModelRow:
    """The ``models`` row of ``name`` loaded from ``path`` (``source``: ``registered`` or ``bundled``).

    The name and path are the caller's: one loaded model may serve several
    names whose folders hold the same files. ``register`` marks the row as
    the one ``name`` now resolves to (``embedq models add``).
    """
    return models_store.upsert_model(
        conn=conn,
        name=name,
        sha256=loaded.sha256,
        dtype=dtype,
        backend=backend,
        artifact_path=str(path),
        dimension=loaded.dimension,
        max_seq_length=loaded.max_seq_length,
        config={**loaded.config(), "source": source},
        register=register,
    )


_runtime_lock = threading.Lock()


@cache
def _build_runtime() -> Runtime:
    return Runtime(get_settings())


def runtime() -> Runtime:
    """This process's runtime, built on first call (from any thread)."""
    with _runtime_lock:
        return _build_runtime()


def preload(name: str) -> None:
    """Load ``name`` in a background thread of this process; tasks wait on the runtime lock meanwhile."""
    import logging

    def load() -> None:
        rt = runtime()
        with rt.lock:
            try:
                rt.model(name)
            except Exception as exc:  # a bad preload must not kill the worker; jobs report the error
                logging.getLogger(__name__).warning("preload of %s failed: %s", name, exc)

    threading.Thread(target=load, name="embedq-preload", daemon=True).start()
