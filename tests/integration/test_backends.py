"""Backends end to end: an ``auto`` worker gates int8, then serves it, while torch stays one request away.

The slow test runs a worker of its own (``EMBEDQ_BACKEND=auto``) on an
isolated database, another Redis db and an artifact root in the test's tmp
folder, with a 300-pair gate (``EMBEDQ_GATE_PAIRS``) to keep it short.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
import torch

from api_client import EmbedQ
from api_client.errors import BadRequest, ModelMismatch, UnknownModel
from api_client.settings import get_settings
from api_client.states import JobKind
from tasks import backends
from tasks.artifacts import verify_artifact
from tests import helpers
from worker.stack import stop_worker

WAIT = 240
INT8 = backends.variant("onnx-int8", backends.isa() or "avx2")


def test_a_backend_this_worker_lacks_is_refused_with_the_install_hint(eq) -> None:
    if backends.unavailable("openvino") is None:
        pytest.skip("OpenVINO is installed here")
    with pytest.raises(UnknownModel, match=r"openvino.*pip install"):
        eq.encode(["a text"], backend="openvino").result(timeout=60)
    with pytest.raises(BadRequest, match="backend"):
        eq.encode(["a text"], backend="tensorrt")


def _gate_cli(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "models", "gate", helpers.MODEL, "--backend", "onnx-int8"],
        env={**os.environ, **env, **extra},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def _gate(conn: psycopg.Connection) -> dict | None:
    row = conn.execute("SELECT metrics->'gate' FROM models WHERE backend = %s", (INT8,)).fetchone()
    return row[0] if row else None


def _served(eq: EmbedQ, backend: str, *, within: float) -> dict:
    """Encode jobs of new texts until one is served by ``backend``; its summary."""
    deadline = time.monotonic() + within
    while True:
        summary = eq.encode(helpers.unique_texts(2)).wait(timeout=WAIT).result
        if summary["backend"] == backend or time.monotonic() > deadline:
            assert summary["backend"] == backend
            return summary
        time.sleep(1)


def _upsert(eq: EmbedQ, name: str, documents: list[dict], *, backend: str) -> dict:
    """An upsert that names a backend (the client's ``upsert`` has no such keyword)."""
    raw = {"collection": name, "documents": documents, "backend": backend}
    return eq._submit(JobKind.UPSERT, raw, idempotency_key=None, lane=None, hardware=None).result(timeout=WAIT)


def _backend_of(conn: psycopg.Connection, model_id: int) -> str:
    return conn.execute("SELECT backend FROM models WHERE id = %s", (model_id,)).fetchone()[0]


@pytest.mark.slow
def test_auto_gates_int8_serves_it_and_keeps_torch_exact_collections_bound_and_failed_gates_unserved(
    isolated_database: str, broker_url: str, tmp_path: Path, st_model
) -> None:
    root = tmp_path / "artifacts"
    env = helpers.worker_env(
        helpers.other_redis_db(broker_url),
        isolated_database,
        EMBEDQ_ARTIFACT_ROOT=str(root),
        EMBEDQ_BACKEND="auto",
        EMBEDQ_GATE_PAIRS="300",
    )
    worker = helpers.start_worker(env, isolated_database, f"auto-{uuid.uuid4().hex[:6]}@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        with psycopg.connect(isolated_database, autocommit=True) as conn:
            # A collection whose binding upsert asked for torch is bound to the torch row.
            eq.create_collection("early")
            early = _upsert(eq, "early", [{"id": "a", "text": "my card was declined"}], backend="torch")
            assert _backend_of(conn, early["model_id"]) == "torch"

            # The preload started one background build and gate of this CPU's int8 files.
            deadline = time.monotonic() + WAIT
            while (gate := _gate(conn)) is None and time.monotonic() < deadline:
                time.sleep(2)
            assert gate is not None and gate["passed"], gate
            assert gate["pairs"] == 300 and abs(gate["delta"]) <= 0.005 and gate["tolerance"] == 0.005
            assert 0.9 < gate["min_cosine"] <= gate["mean_cosine"] < 1 and gate["isa"] == backends.isa()
            assert gate["seconds"] > 0 and gate["reference_spearman"] > 0.8
            folder = Path(conn.execute("SELECT artifact_path FROM models WHERE backend = %s", (INT8,)).fetchone()[0])
            assert verify_artifact(folder)["files"][backends.file_name(INT8)] == gate["file_sha256"]

            served = _served(eq, INT8, within=30)
            assert _backend_of(conn, served["model_id"]) == INT8

            # int8 and torch vectors of the same texts: separate cache entries, torch exactly the library's.
            texts = helpers.unique_texts(6)
            int8 = eq.encode(texts).result(timeout=WAIT)
            exact_job = eq.encode(texts, backend="torch")
            exact = exact_job.result(timeout=WAIT)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as the worker runs (EMBEDQ_TORCH_THREADS=1): the same floats, bit for bit
            try:
                np.testing.assert_array_equal(exact, st_model.encode(texts))
            finally:
                torch.set_num_threads(threads)
            assert exact_job.info().result["backend"] == "torch" and exact_job.info().result["encoded"] == len(texts)
            cosines = (int8 * exact).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(exact, axis=1)
            assert cosines.min() > 0.95 and not np.array_equal(int8, exact)
            rows = conn.execute(
                "SELECT m.backend, count(*) FROM embeddings e JOIN models m ON m.id = e.model_id "
                "WHERE e.model_id IN (%s, %s) GROUP BY m.backend",
                (served["model_id"], exact_job.info().result["model_id"]),
            ).fetchall()
            assert dict(rows)["torch"] >= len(texts) and dict(rows)[INT8] >= len(texts)

            # A collection keeps computing with its bound row's backend, whatever auto now picks.
            more = eq.upsert("early", [{"id": "b", "text": "where is my new card"}]).result(timeout=WAIT)
            assert more["model_id"] == early["model_id"]
            hits = eq.search("early", ["card declined"], k=2).result(timeout=WAIT)
            assert hits[0][0]["id"] == "a"
            eq.create_collection("late")
            late = eq.upsert("late", [{"id": "a", "text": "my card was declined"}]).result(timeout=WAIT)
            assert _backend_of(conn, late["model_id"]) == INT8
            with pytest.raises(ModelMismatch):
                _upsert(eq, "late", [{"id": "c", "text": "x"}], backend="torch")

            # A failed gate (tolerance 0) is never served by auto, and refused when asked for.
            failed = _gate_cli(env, EMBEDQ_GATE_TOLERANCE="0")
            assert failed.returncode == 1 and f"{INT8}: FAILED" in failed.stdout, failed.stdout + failed.stderr
            assert _gate(conn)["passed"] is False
            _served(eq, "torch", within=30)
            for _ in range(3):
                assert eq.encode(helpers.unique_texts(1)).wait(timeout=WAIT).result["backend"] == "torch"
            with pytest.raises(UnknownModel, match="failed its quality gate"):
                eq.encode(["a text"], backend="onnx-int8").result(timeout=WAIT)

            # A tampered file is rebuilt (same bytes: the export is deterministic) by the next build.
            model_file = folder / backends.file_name(INT8)
            data = bytearray(model_file.read_bytes())
            data[len(data) // 2] ^= 0xFF
            model_file.write_bytes(bytes(data))
            again = _gate_cli(env)
            assert again.returncode == 0 and f"{INT8}: passed" in again.stdout, again.stdout + again.stderr
            assert verify_artifact(folder)["files"][backends.file_name(INT8)] == gate["file_sha256"]
            _served(eq, INT8, within=30)
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
