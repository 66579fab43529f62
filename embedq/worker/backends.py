"""Backends behind the quality gate: building their files, gating them, promoting one, choosing one per job.

A model version runs on torch fp32 from its folder, or on a faster backend
from files exported from that folder (``embedq.cores.backends``): one artifact
under ``<artifact root>/backend/<sha256[:32]>/<export>`` (manifest with the
sha256 of every file), built under a PostgreSQL advisory lock per (version,
export) so two processes never build the same one. The ONNX and OpenVINO
backends share the ONNX fp32 export; int8 has its own.

The gate (``embedq.cores.gate``) judges a backend against torch fp32 and its record
goes into the version's ``models`` row (``metrics.gate``, with the sha256 of
the file it judged). Which backend a version serves to ``backend="auto"`` is
the fleet's decision, recorded in ``model_serving`` by an explicit
promotion (``promote``: ``embedq models promote``, or the gate the first
``embedq up`` runs); with none recorded it is torch. Workers follow the
record; they never switch on their own.

A backend's files that are missing, or differ from the ones its gate judged,
are rebuilt while the job waits (the export is deterministic, so the rebuilt
file has the gated sha256 again); if they still differ the job fails with
``ArtifactCorrupt``. A job is never moved to torch behind its back.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from api_client.backends import requested
from api_client.errors import ArtifactCorrupt, UnknownModel
from api_client.settings import Settings
from embedq.cores import backends as core
from embedq.cores import gate as gate_core
from embedq.cores.artifacts import MANIFEST, remove_stale_temps, verify_artifact, write_artifact
from embedq.worker.store import backends as store

log = logging.getLogger(__name__)

KIND = "backend"
DTYPE = "float32"
"""Gated backends are CPU backends: their versions compute in float32 (bf16 inside OpenVINO)."""


def artifact_folder(root: Path, sha256: str, backend: str) -> Path:
    """The artifact folder backend ``backend`` of version ``sha256`` runs from."""
    return root / KIND / sha256[:32] / core.export_name(backend)


def file_digest(folder: Path, backend: str) -> str | None:
    """The sha256 its manifest gives the backend's model file, or ``None`` when there is no readable manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return manifest["files"][core.file_name(backend)]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_artifact(root: Path, source: Path, sha256: str, backend: str) -> Path:
    """The artifact folder of ``backend`` for the model in ``source``: verified, built if missing, rebuilt if corrupt.

    The caller holds the build lock of (``sha256``, ``backend``'s export).
    """
    folder = artifact_folder(root, sha256, backend)
    export = core.export_name(backend)
    if folder.exists():
        try:
            verify_artifact(folder)
            return folder
        except ArtifactCorrupt as exc:
            log.warning("rebuilding the %s files of %s: %s", export, sha256[:12], exc.message)
            shutil.rmtree(folder)
    remove_stale_temps(root, KIND, sha256[:32])
    return write_artifact(
        root,
        KIND,
        sha256[:32],
        export,
        lambda tmp: core.export(source, export, tmp),
        {"sha256": sha256, "backend": export, "file": core.file_name(backend), "source": str(source)},
    )


@dataclass(frozen=True)
class Target:
    """One model version to build, gate or run a backend for."""

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


@contextmanager
def build_lock(conn: psycopg.Connection, target: Target) -> Iterator[None]:
    """Hold the build lock of the target's version and export, waiting for whoever holds it."""
    export = core.export_name(target.backend)
    store.lock(conn, sha256=target.sha256, backend=export)
    try:
        yield
    finally:
        store.unlock(conn, sha256=target.sha256, backend=export)


def built(conn: psycopg.Connection, settings: Settings, target: Target) -> Path:
    """The target's artifact folder, built or rebuilt if needed, under its build lock."""
    with build_lock(conn, target):
        return ensure_artifact(settings.artifacts, target.source, target.sha256, target.backend)


def _encoder(model: Any) -> gate_core.Encoder:
    return lambda texts, batch_size: model.encode(texts, batch_size=batch_size)


def _facts(model: Any) -> Facts:
    return Facts(
        dimension=model.get_embedding_dimension(),
        max_seq_length=model.max_seq_length,
        config={
            "prompts": {key: value for key, value in (model.prompts or {}).items() if value is not None},
            "default_prompt_name": model.default_prompt_name,
        },
    )


def gate_data(settings: Settings) -> gate_core.GateData:
    """The shipped gate data, cut to the settings' sizes (0 keeps a part whole)."""
    return gate_core.shipped().sample(
        pairs=settings.gate_pairs,
        paraphrases=settings.gate_paraphrase_texts,
        documents=settings.gate_documents,
        queries=settings.gate_queries,
    )


def criteria(settings: Settings, backend: str) -> gate_core.Criteria:
    """The gate's thresholds for ``backend``: the settings' tolerance, the invariance of its precision."""
    return gate_core.Criteria(tolerance=settings.gate_tolerance, invariance=core.INVARIANCE[core.precision(backend)])


Say = Callable[[str], None]


def gate_version(
    conn: psycopg.Connection,
    settings: Settings,
    target: Target,
    backends: list[str],
    *,
    threads: int,
    say: Say = log.info,
    first_passing: bool = False,
) -> dict[str, dict[str, Any]]:
    """Build and gate ``backends`` (row names) for the target's version; ``{backend: record}``.

    torch fp32 is measured once as the reference. Each record is stored in
    its backend's ``models`` row, with the sha256 of the file it judged; a
    backend whose build or load fails gets a failed record saying why. With
    ``first_passing``, the backends are first timed on a few hundred
    documents and gated fastest first, stopping at the first that passes
    (the one a promotion would pick anyway).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    data = gate_data(settings)
    sizes = data.sizes()
    say(
        f"gate of {target.name} {target.sha256[:12]}: torch fp32 reference on {sizes['pairs']:,} STS pairs, "
        f"{sizes['paraphrase_texts']:,} paraphrase texts, {sizes['documents']:,} documents, "
        f"{sizes['queries']:,} queries"
    )
    started = time.monotonic()
    torch_model = SentenceTransformer(str(target.source), device="cpu", local_files_only=True, trust_remote_code=False)
    reference = gate_core.measure(_encoder(torch_model), data, probe=False)
    say(f"reference: {reference.texts_per_second:,.0f} texts/s, one text {reference.one_text_ms:.1f} ms")
    loaded: dict[str, tuple[Path, Any]] = {}
    order = list(backends)
    if first_passing and len(order) > 1:
        speeds = {}
        for backend in order:
            try:
                loaded[backend] = _built_and_loaded(conn, settings, replace(target, backend=backend), threads)
                speeds[backend] = gate_core.speed(_encoder(loaded[backend][1]), data.documents[:PROBE_TEXTS])
            except Exception as exc:  # gated below, where the failure is recorded
                log.warning("%s could not be built or loaded: %s", backend, exc)
                speeds[backend] = 0.0
        order.sort(key=lambda backend: -speeds[backend])
        say("speed on " + f"{PROBE_TEXTS} documents: " + ", ".join(f"{b} {speeds[b]:,.0f} texts/s" for b in order))
    records = {}
    for backend in order:
        records[backend] = _gate_one(
            conn, settings, replace(target, backend=backend), reference, data, threads, say, loaded.pop(backend, None)
        )
        if first_passing and records[backend].get("passed"):
            break
    say(f"gate of {target.name} done in {time.monotonic() - started:.0f} s")
    return records


PROBE_TEXTS = 512
"""Documents each backend encodes to order them by speed before the gate (``first_passing``)."""


def _built_and_loaded(conn: psycopg.Connection, settings: Settings, target: Target, threads: int) -> tuple[Path, Any]:
    folder = built(conn, settings, target)
    return folder, core.load(target.backend, folder, threads=threads)


def _gate_one(  # noqa: PLR0917 (one private call site)
    conn: psycopg.Connection,
    settings: Settings,
    target: Target,
    reference: gate_core.Measured,
    data: gate_core.GateData,
    threads: int,
    say: Say,
    loaded: tuple[Path, Any] | None = None,
) -> dict[str, Any]:
    started = time.monotonic()
    folder = artifact_folder(settings.artifacts, target.sha256, target.backend)
    facts = Facts()
    rules = criteria(settings, target.backend)
    try:
        folder, model = loaded or _built_and_loaded(conn, settings, target, threads)
        measured = gate_core.measure(_encoder(model), data, stop_above=rules.invariance)
        result = gate_core.judge(reference, measured, data, rules)
        facts = _facts(model)
        record = result.record(
            backend=target.backend,
            precision=core.precision(target.backend),
            isa=core.bf16_isa() if core.precision(target.backend) == "bf16" else core.isa(),
            threads=threads,
            file=core.file_name(target.backend),
            file_sha256=file_digest(folder, target.backend),
        )
    except psycopg.Error:
        raise
    except Exception as exc:  # the export or the candidate failed: a failed gate
        log.exception("building %s on %s failed", target.name, target.backend)
        record = {"passed": False, "failed": ["build"], "backend": target.backend, "error": f"{exc}"[:500]}
    record["build_seconds"] = round(time.monotonic() - started, 3)
    store.record_gate(
        conn=conn,
        name=target.name,
        sha256=target.sha256,
        dtype=DTYPE,
        backend=target.backend,
        artifact_path=str(folder),
        dimension=facts.dimension,
        max_seq_length=facts.max_seq_length,
        config={**facts.config, "source": target.source_kind, "source_path": str(target.source)},
        gate=record,
    )
    say(gate_line(record))
    return record


def gate_line(gate: dict[str, Any]) -> str:
    """The figures of one gate record, on one line."""
    backend = gate.get("backend")
    if gate.get("error"):
        return f"{backend}: FAILED, the build failed: {gate['error']}"
    verdict = "passed" if gate.get("passed") else f"FAILED ({', '.join(gate.get('failed') or [])})"
    if "sts" not in gate:  # a record of an earlier release: STS Spearman only
        return f"{backend}: {verdict}: STS dev Spearman {gate.get('spearman')} (delta {gate.get('delta')})"
    sts, inv, para, search, speed = (gate[key] for key in ("sts", "invariance", "paraphrases", "search", "speed"))
    if "skipped" in sts:
        return (
            f"{backend}: {verdict}: a text's vector depends on its batch-mates: max |d| {inv['max_abs']:.2g} "
            f"alone vs in batches (allowed {inv['tolerance']:g}, min cosine {inv['min_cosine']:.4f})"
        )
    return (
        f"{backend}: {verdict}: STS dev Spearman {sts['spearman']:.4f} (torch {sts['reference']:.4f}, "
        f"delta {sts['delta']:+.4f}, |dcos| mean {sts['mean_dcos']:.2g}); batch invariance max |d| "
        f"{inv['max_abs']:.2g} (<= {inv['tolerance']:g}); paraphrases@{para['threshold']} recall "
        f"{para['recall']:.3f} precision {para['precision']:.3f}; top-{search['k']} overlap {search['overlap']:.3f}; "
        f"{speed['texts_per_second']:,.0f} texts/s ({speed['ratio']}x torch), one text {speed['one_text_ms']:.1f} ms"
    )


def fastest_passed(records: dict[str, dict[str, Any]]) -> str | None:
    """The backend with the most texts per second among those whose gate passed, or ``None``."""
    passed = [(record["speed"]["texts_per_second"], name) for name, record in records.items() if record.get("passed")]
    return max(passed)[1] if passed else None


def promote(conn: psycopg.Connection, target: Target, backend: str, *, by: str) -> None:
    """Record ``backend`` (a row name, or ``torch``) as what the target's version serves to ``auto``, fleet-wide.

    Raises:
        UnknownModel: ``backend`` has no passed gate for this version.
    """
    if backend != "torch":
        gate = store.gates(conn=conn, name=target.name, sha256=target.sha256, dtype=DTYPE).get(backend)
        if not gate or not gate.get("passed"):
            why = "it has not been gated" if not gate else f"its gate failed ({', '.join(gate.get('failed') or [])})"
            raise UnknownModel(
                f"model {target.name!r} (version {target.sha256[:12]}) cannot be promoted to {backend}: {why}; "
                f"run `embedq models gate {target.name} --backend {requested(backend)}` first",
                detail={"model": target.name, "backend": backend},
            )
    store.promote(conn=conn, name=target.name, sha256=target.sha256, dtype=DTYPE, backend=backend, by=by)
    log.info("model %s %s now serves %s (promoted by %s)", target.name, target.sha256[:12], backend, by)


@dataclass(frozen=True)
class Choice:
    """The backend a job's model version runs on, and the folder its files load from (``None``: torch)."""

    backend: str
    artifact: Path | None = None


TORCH = Choice("torch")


class Backends:
    """This process's view of the backends: what the CPU runs, what each version serves."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.isa = core.isa()
        self.bf16 = core.bf16_isa()

    def choose(self, conn: psycopg.Connection, target: Target, wanted: str) -> Choice:
        """The backend to run ``target``'s version on for a request of ``wanted`` (``auto`` or a backend).

        ``auto`` is the backend promoted for the version (torch while none is).
        Files that are missing or differ from the gated ones are rebuilt here,
        while the job waits.

        Raises:
            UnknownModel: a backend this worker cannot run, or whose gate has not passed for this version.
            ArtifactCorrupt: rebuilt files that still differ from the gated ones.
        """
        if wanted == "torch":
            return TORCH
        if self.settings.hardware == "gpu" and wanted != "auto":
            raise _refuse(target, wanted, "GPU workers run torch")
        if wanted == "auto":
            served = store.serving(conn=conn, name=target.name, sha256=target.sha256, dtype=DTYPE)
            if served is None or served == "torch":
                return TORCH
            return self._gated(conn, replace(target, backend=served), promoted=True)
        try:
            backend = core.variant(wanted, self.isa, self.bf16)
        except core.BackendUnavailable as exc:
            raise _refuse(target, wanted, str(exc)) from exc
        return self._gated(conn, replace(target, backend=backend), promoted=False)

    def _gated(self, conn: psycopg.Connection, target: Target, *, promoted: bool) -> Choice:
        backend = target.backend
        reason = core.unavailable(backend)
        if reason is not None:
            if promoted:
                reason += (
                    f"; it is the backend promoted for this model fleet-wide: promote one every worker runs "
                    f"(`embedq models promote {target.name} --backend openvino`) or run this model on other workers"
                )
            raise _refuse(target, backend, reason)
        gate = store.gates(conn=conn, name=target.name, sha256=target.sha256, dtype=DTYPE).get(backend)
        if gate is None:
            raise _refuse(
                target,
                backend,
                f"its quality gate has not run: run `embedq models gate {target.name} --backend "
                f"{requested(backend)}`; until then ask for backend 'auto' or 'torch'",
            )
        if not gate.get("passed"):
            raise _refuse(target, backend, f"it failed its quality gate ({', '.join(gate.get('failed') or [])})")
        return Choice(backend, self.verified(conn, target, gate))

    def verified(
        self, conn: psycopg.Connection, target: Target, gate: dict[str, Any] | None = None, *, rebuild: bool = False
    ) -> Path:
        """The target's artifact folder holding the files its gate judged: rebuilt now if they differ.

        ``rebuild`` rebuilds it whatever its manifest says (a file failed its manifest's hash on loading).
        """
        if gate is None:
            gate = store.gates(conn=conn, name=target.name, sha256=target.sha256, dtype=DTYPE).get(target.backend, {})
        folder = artifact_folder(self.settings.artifacts, target.sha256, target.backend)
        if not rebuild and file_digest(folder, target.backend) == gate.get("file_sha256"):
            return folder
        log.warning("the %s files of %s differ from the gated ones: rebuilding", target.backend, target.name)
        with build_lock(conn, target):
            if folder.exists() and (rebuild or file_digest(folder, target.backend) != gate.get("file_sha256")):
                shutil.rmtree(folder)
            folder = ensure_artifact(self.settings.artifacts, target.source, target.sha256, target.backend)
        if file_digest(folder, target.backend) != gate.get("file_sha256"):
            raise ArtifactCorrupt(
                f"the {target.backend} files of {target.name!r} differ from the ones that passed the gate, even "
                f"rebuilt; gate them again: `embedq models gate {target.name} --backend {requested(target.backend)} "
                "--promote`",
                detail={"model": target.name, "backend": target.backend, "path": str(folder)},
            )
        return folder


def _refuse(target: Target, backend: str, why: str) -> UnknownModel:
    return UnknownModel(
        f"model {target.name!r} (version {target.sha256[:12]}) cannot run on backend {backend!r} here: {why}",
        detail={"model": target.name, "backend": backend, "field": "backend"},
    )
