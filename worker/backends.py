"""Backends behind the quality gate: building their files once, gating them, choosing one per job.

A model version runs on torch fp32 from its folder, or on a faster backend
from files exported from that folder (``tasks.backends``). Those files are
built once per model version and backend, as an artifact under
``<artifact root>/backend/<sha256[:32]>/<backend>`` (manifest with the sha256
of every file), by whichever worker or ``embedq models gate`` gets there
first: a PostgreSQL advisory lock per (version, backend) keeps two from
building the same one. The gate (``tasks.gate``) then compares the backend's
STS Benchmark dev Spearman with torch fp32's, and its figures go into the
version's ``models`` row (``metrics.gate``), with the sha256 of the file it
judged.

``auto`` serves the fastest backend whose gate passed (int8, then ONNX fp32,
then OpenVINO, then torch); until one has, it serves torch and starts one
background build and gate. A backend a request names explicitly serves only
after its gate passed, too. An artifact whose files no longer match their
manifest is rebuilt under the lock (the export is deterministic: the rebuilt
file has the gated sha256 again); until then ``auto`` serves torch and an
explicit request fails with ``ArtifactCorrupt``.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from api_client.db import connect
from api_client.errors import ArtifactCorrupt, UnknownModel
from api_client.settings import Settings
from tasks import backends as core
from tasks import gate as gate_core
from tasks.artifacts import MANIFEST, remove_stale_temps, verify_artifact, write_artifact
from worker.store import backends as store

log = logging.getLogger(__name__)

KIND = "backend"
RETRY_AFTER = 60.0
"""Seconds before this process starts another background build of a version whose last one did not finish."""


def artifact_folder(root: Path, sha256: str, backend: str) -> Path:
    return root / KIND / sha256[:32] / backend


def file_digest(folder: Path, backend: str) -> str | None:
    """The sha256 its manifest gives the backend's model file, or ``None`` when there is no readable manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return manifest["files"][core.file_name(backend)]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_artifact(root: Path, source: Path, sha256: str, backend: str) -> Path:
    """The artifact folder of ``backend`` for the model in ``source``: verified, built if missing, rebuilt if corrupt.

    The caller holds the build lock of (``sha256``, ``backend``).
    """
    folder = artifact_folder(root, sha256, backend)
    if folder.exists():
        try:
            verify_artifact(folder)
            return folder
        except ArtifactCorrupt as exc:
            log.warning("rebuilding the %s files of %s: %s", backend, sha256[:12], exc.message)
            shutil.rmtree(folder)
    remove_stale_temps(root, KIND, sha256[:32])
    return write_artifact(
        root,
        KIND,
        sha256[:32],
        backend,
        lambda tmp: core.export(source, backend, tmp),
        {"sha256": sha256, "backend": backend, "file": core.file_name(backend), "source": str(source)},
    )


@dataclass(frozen=True)
class Target:
    """One model version to build and gate a backend for."""

    name: str
    source: Path
    source_kind: str
    """``registered`` or ``bundled``, as the ``models`` row records it."""
    sha256: str
    backend: str


@dataclass(frozen=True)
class Facts:
    """What the ``models`` row records about the loaded model besides the gate."""

    dimension: int | None = None
    max_seq_length: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


def gate_artifact(target: Target, folder: Path, settings: Settings, *, threads: int) -> tuple[dict[str, Any], Facts]:
    """Run the gate of the files in ``folder`` against torch fp32: its record (not stored) and the model's facts."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    reference = SentenceTransformer(str(target.source), device="cpu", local_files_only=True, trust_remote_code=False)
    candidate = SentenceTransformer(
        str(folder), device="cpu", local_files_only=True, trust_remote_code=False,
        **core.load_kwargs(target.backend, threads=threads),
    )  # fmt: skip
    pairs = gate_core.stsb_dev().sample(settings.gate_pairs)
    result = gate_core.run_gate(
        lambda texts: reference.encode(texts, batch_size=64),
        lambda texts: candidate.encode(texts, batch_size=64),
        pairs,
        tolerance=settings.gate_tolerance,
    )
    record = result.record(
        backend=target.backend,
        isa=core.isa(),
        threads=threads,
        file=core.file_name(target.backend),
        file_sha256=file_digest(folder, target.backend),
    )
    facts = Facts(
        dimension=candidate.get_embedding_dimension(),
        max_seq_length=candidate.max_seq_length,
        config={
            "prompts": {key: value for key, value in (candidate.prompts or {}).items() if value is not None},
            "default_prompt_name": candidate.default_prompt_name,
        },
    )
    return record, facts


@contextmanager
def build_lock(conn: psycopg.Connection, target: Target, *, wait: bool) -> Iterator[bool]:
    """Hold the build lock of the target's version and backend; yields False when another holds it and not ``wait``."""
    if wait:
        store.lock(conn, sha256=target.sha256, backend=target.backend)
    elif not store.try_lock(conn, sha256=target.sha256, backend=target.backend):
        yield False
        return
    try:
        yield True
    finally:
        store.unlock(conn, sha256=target.sha256, backend=target.backend)


def build_and_gate(
    conn: psycopg.Connection, settings: Settings, target: Target, *, wait: bool, force: bool, threads: int = 1
) -> dict[str, Any] | None:
    """Build the target's files if needed, gate them if needed, record the gate; returns the gate record.

    Under the version's build lock. Without ``force`` a recorded gate whose
    file still has the gated sha256 is kept as it is (only missing or corrupt
    files are rebuilt). Returns ``None`` when another session holds the lock
    and ``wait`` is off.
    """
    with build_lock(conn, target, wait=wait) as held:
        if not held:
            return None
        started = time.monotonic()
        recorded = store.gates(conn=conn, name=target.name, sha256=target.sha256, dtype="float32").get(target.backend)
        folder = artifact_folder(settings.artifacts, target.sha256, target.backend)
        facts = Facts()
        try:
            folder = ensure_artifact(settings.artifacts, target.source, target.sha256, target.backend)
            if (
                recorded is not None
                and not force
                and recorded.get("file_sha256") == file_digest(folder, target.backend)
            ):
                return recorded
            record, facts = gate_artifact(target, folder, settings, threads=threads)
        except (psycopg.Error, core.BackendUnavailable):
            raise
        except Exception as exc:  # the export or the candidate failed: a failed gate, so auto moves on
            log.exception("building %s on %s failed", target.name, target.backend)
            record = {"passed": False, "backend": target.backend, "isa": core.isa(), "error": f"{exc}"[:500]}
        record["build_seconds"] = round(time.monotonic() - started, 3)
        store.record_gate(
            conn=conn,
            name=target.name,
            sha256=target.sha256,
            dtype="float32",
            backend=target.backend,
            artifact_path=str(folder),
            dimension=facts.dimension,
            max_seq_length=facts.max_seq_length,
            config={**facts.config, "source": target.source_kind, "source_path": str(target.source)},
            gate=record,
        )
        log.info("gate of %s %s on %s: %s", target.name, target.sha256[:12], target.backend, record)
        return record


@dataclass(frozen=True)
class Choice:
    """The backend a job's model version runs on, and the folder its files load from (``None``: torch)."""

    backend: str
    artifact: Path | None = None


TORCH = Choice("torch")


class Backends:
    """This process's view of the backends: what the CPU runs, gate records, background builds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.isa = core.isa()
        self._started: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def choose(self, conn: psycopg.Connection, target: Target, wanted: str) -> Choice:
        """The backend to run ``target``'s version on for a request of ``wanted`` (``auto`` or a backend).

        Raises:
            UnknownModel: an explicitly wanted backend that this worker cannot run, or
                whose gate has not passed for this version.
            ArtifactCorrupt: an explicitly wanted backend whose files differ from the gated ones.
        """
        if wanted == "torch":
            return TORCH
        recorded = store.gates(conn=conn, name=target.name, sha256=target.sha256, dtype="float32")
        if wanted == "auto":
            return self._auto(target, recorded)
        return self._explicit(target, wanted, recorded)

    def _auto(self, target: Target, recorded: dict[str, dict[str, Any]]) -> Choice:
        candidates = core.candidates(self.isa)
        for backend in candidates:
            gate = recorded.get(backend)
            if gate is not None and gate.get("passed"):
                folder = artifact_folder(self.settings.artifacts, target.sha256, backend)
                if file_digest(folder, backend) == gate.get("file_sha256"):
                    return Choice(backend, folder)
                self.start(_retarget(target, backend), "its files are missing or differ from the gated ones")
        missing = [backend for backend in candidates if backend not in recorded]
        if missing and not any(recorded.get(backend, {}).get("passed") for backend in candidates):
            self.start(_retarget(target, missing[0]), "no gate recorded yet")
        return TORCH

    def _explicit(self, target: Target, wanted: str, recorded: dict[str, dict[str, Any]]) -> Choice:
        def refuse(why: str) -> UnknownModel:
            return UnknownModel(
                f"model {target.name!r} (version {target.sha256[:12]}) cannot run on backend {wanted!r} here: {why}",
                detail={"model": target.name, "backend": wanted, "field": "backend"},
            )

        if self.settings.hardware == "gpu":
            raise refuse("GPU workers run torch")
        try:
            backend = core.variant(wanted, self.isa)
        except core.BackendUnavailable as exc:
            raise refuse(str(exc)) from exc
        reason = core.unavailable(backend)
        if reason is not None:
            raise refuse(reason)
        gate = recorded.get(backend)
        if gate is None:
            self.start(_retarget(target, backend), "asked for explicitly")
            raise refuse(
                f"its quality gate has not run yet; it is being built and gated now (or run `embedq models gate "
                f"{target.name} --backend {wanted}`): until then ask for backend 'auto' or 'torch'"
            )
        if not gate.get("passed"):
            raise refuse(
                f"it failed its quality gate (STS Benchmark dev Spearman {gate.get('spearman')} against torch "
                f"fp32's {gate.get('reference_spearman')}, tolerance {gate.get('tolerance')})"
            )
        folder = artifact_folder(self.settings.artifacts, target.sha256, backend)
        if file_digest(folder, backend) != gate.get("file_sha256"):
            self.start(_retarget(target, backend), "its files are missing or differ from the gated ones")
            raise ArtifactCorrupt(
                f"the {backend} files of {target.name!r} are missing or differ from the ones that passed the gate; "
                "they are being rebuilt",
                detail={"model": target.name, "backend": backend, "path": str(folder)},
            )
        return Choice(backend, folder)

    def start(self, target: Target, why: str) -> None:
        """Build and gate ``target`` in a background thread, unless this process did so in the last minute."""
        key = (target.name, target.sha256, target.backend)
        with self._lock:
            last = self._started.get(key)
            if last is not None and time.monotonic() - last < RETRY_AFTER:
                return
            self._started[key] = time.monotonic()
        log.info("building and gating %s %s on %s (%s)", target.name, target.sha256[:12], target.backend, why)
        threading.Thread(target=self._build, args=(target,), name="embedq-gate", daemon=True).start()

    def _build(self, target: Target) -> None:
        try:
            with connect(self.settings.require_database(), application_name="embedq-gate") as conn:
                if build_and_gate(conn, self.settings, target, wait=False, force=False) is None:
                    log.info("another worker is building %s on %s", target.name, target.backend)
        except Exception:  # a background build must not kill the worker; the next lookup tries again
            log.exception("building and gating %s on %s failed", target.name, target.backend)


def _retarget(target: Target, backend: str) -> Target:
    return Target(target.name, target.source, target.source_kind, target.sha256, backend)
