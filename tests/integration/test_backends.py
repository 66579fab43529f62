"""Backends end to end: the gate refuses what is not faithful, a promotion is the fleet's one switch.

The main test runs a worker of its own on an isolated database, another
Redis db and an artifact root in the test's tmp folder, with a small gate
(``EMBEDQ_GATE_*``) to keep it short, and a 0.5 s model recheck so that a
promotion reaches the worker while a job runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
import torch

from api_client import EmbedQ
from api_client.backends import requested
from api_client.errors import BadRequest, UnknownModel
from api_client.settings import get_settings
from embedq.cores import backends
from embedq.worker.stack import stop_worker
from embedq.worker.store.backends import promote
from tests import helpers

WAIT = 240
INT8 = backends.variant("onnx-int8", backends.isa() or "avx2")
SMALL_GATE = {
    "EMBEDQ_GATE_PAIRS": "150",
    "EMBEDQ_GATE_PARAPHRASE_TEXTS": "300",
    "EMBEDQ_GATE_DOCUMENTS": "1000",
    "EMBEDQ_GATE_QUERIES": "60",
}
VARIANTS = ["Where is my new debit card?", "WHERE IS MY NEW DEBIT CARD?", "where is MY new Debit card?"]
"""Texts the model's uncased tokenizer reads as the same tokens, so their vectors are cached apart."""


def test_a_backend_is_refused_until_its_gate_passed(eq) -> None:
    with pytest.raises(UnknownModel, match=r"quality gate has not run.*embedq models gate"):
        eq.encode(["a text"], backend="onnx").result(timeout=60)
    with pytest.raises(BadRequest, match="backend"):
        eq.encode(["a text"], backend="tensorrt")
    assert eq.encode(["a text"]).wait(timeout=60).result["backend"] == "torch"  # nothing promoted: torch


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def _gates(conn: psycopg.Connection) -> dict[str, dict]:
    rows = conn.execute("SELECT backend, metrics->'gate' FROM models WHERE metrics ? 'gate'").fetchall()
    return dict(rows)


def _serving(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT backend FROM model_serving").fetchone()
    return row[0] if row else None


def _max_delta(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def _long_text(n: int) -> str:
    return " ".join(helpers.banking_texts(n, offset=500))


def _check_invariance(eq: EmbedQ, tolerance: float) -> None:
    """The same tokens give the same vector alone, in a mixed batch on the batch lane, and inside a chunk."""
    alone = eq.encode(VARIANTS[:1], lane="interactive").result(timeout=WAIT)[0]
    batch = [_long_text(12), *helpers.unique_texts(30), VARIANTS[1], *helpers.unique_texts(20)]
    in_batch = eq.encode(batch, lane="batch", batch_size=64).result(timeout=WAIT)[31]
    chunked_texts = [*helpers.unique_texts(130), VARIANTS[2], _long_text(8), *helpers.unique_texts(30)]
    job = eq.encode(chunked_texts, idempotency_key=f"variants-{uuid.uuid4()}")
    in_chunk = job.result(timeout=WAIT)[130]
    assert job.info().chunks > 1
    for other in (in_batch, in_chunk):
        assert _max_delta(alone, other) <= tolerance
        assert float(alone @ other / np.linalg.norm(alone) / np.linalg.norm(other)) >= 0.99999 or tolerance > 1e-5


def test_the_gate_refuses_dynamic_int8_and_a_promotion_switches_the_fleet_between_jobs(
    isolated_database: str, broker_url: str, tmp_path: Path, st_model
) -> None:
    root = tmp_path / "artifacts"
    env = helpers.worker_env(
        helpers.other_redis_db(broker_url),
        isolated_database,
        EMBEDQ_ARTIFACT_ROOT=str(root),
        EMBEDQ_MODEL_RECHECK="0.5",
        EMBEDQ_CHUNK_SIZE="100",
        **SMALL_GATE,
    )
    worker = helpers.start_worker(env, isolated_database, f"gate-{uuid.uuid4().hex[:6]}@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        with psycopg.connect(isolated_database, autocommit=True) as conn:
            assert eq.encode(["before any gate"]).wait(timeout=WAIT).result["backend"] == "torch"

            # Dynamic int8 is refused: a text's vector depends on its batch-mates.
            refused = _cli(env, "models", "gate", helpers.MODEL, "--backend", "onnx-int8")
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert f"{INT8}: FAILED (invariance)" in refused.stdout and "batch-mates" in refused.stdout
            record = _gates(conn)[INT8]
            assert record["failed"] == ["invariance"] and record["invariance"]["max_abs"] > 1e-3
            assert record["invariance"]["tolerance"] == 0.0 and _serving(conn) is None
            with pytest.raises(UnknownModel, match=r"failed its quality gate \(invariance\)"):
                eq.encode(["a text"], backend="onnx-int8").result(timeout=WAIT)

            # The fastest backend that passes is promoted, fleet-wide and recorded.
            gated = _cli(env, "models", "gate", helpers.MODEL, "--promote", "--json")
            assert gated.returncode == 0, gated.stdout + gated.stderr
            records = json.loads(gated.stdout[gated.stdout.index("{") :])
            promoted = _serving(conn)
            assert promoted in records and records[promoted]["passed"] and promoted != INT8
            chosen = records[promoted]
            assert chosen["sizes"]["documents"] == 1000 and chosen["search"]["overlap"] >= 0.97
            assert chosen["paraphrases"]["recall"] >= 0.95 and abs(chosen["sts"]["delta"]) <= 0.005
            listing = _cli(env, "models", "list", "--json")
            rows = {row["backend"]: row for row in json.loads(listing.stdout)}
            assert rows[promoted]["serving"] == "default" and rows[promoted]["gate"]["passed"]

            summary = eq.encode(helpers.unique_texts(3)).wait(timeout=WAIT).result
            assert summary["backend"] == promoted
            _check_invariance(eq, backends.INVARIANCE[backends.precision(promoted)])

            # torch stays one request away, with exactly the library's floats.
            texts = helpers.unique_texts(1)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as the worker runs (EMBEDQ_TORCH_THREADS=1): the same floats, bit for bit
            try:
                np.testing.assert_array_equal(
                    eq.encode(texts, backend="torch").result(timeout=WAIT), st_model.encode(texts)
                )
            finally:
                torch.set_num_threads(threads)

            # A promotion while a chunked job runs: every chunk keeps the backend the job started with.
            job = eq.encode(helpers.banking_texts(2000), batch_size=16)
            helpers.wait_until(lambda: job.progress[0] >= 100, timeout=WAIT, what="the first chunk")
            sha256 = conn.execute("SELECT sha256 FROM model_serving").fetchone()[0]
            promote(conn=conn, name=helpers.MODEL, sha256=sha256, dtype="float32", backend="torch", by="the test")
            switched_at = conn.execute("SELECT promoted_at FROM model_serving").fetchone()[0]
            job.result(timeout=WAIT)
            assert job.info().result["backend"] == promoted
            used = conn.execute(
                "SELECT count(DISTINCT o.model_id) FROM encode_outputs o WHERE o.job_id = %s", (job.id,)
            ).fetchone()[0]
            later = conn.execute(
                "SELECT count(*) FROM jobs WHERE parent_id = %s AND started_at > %s + interval '1 second'",
                (job.id, switched_at),
            ).fetchone()[0]
            assert used == 1 and later > 0  # chunks claimed after the switch still used the pinned version
            helpers.wait_until(
                lambda: eq.encode(helpers.unique_texts(1)).wait(timeout=WAIT).result["backend"] == "torch",
                timeout=30,
                what="the next jobs on torch",
            )
            history = conn.execute("SELECT history FROM model_serving").fetchone()[0]
            assert [entry["backend"] for entry in history] == [promoted]
            back = _cli(env, "models", "promote", helpers.MODEL, "--backend", requested(promoted))
            assert back.returncode == 0 and f"now serves {promoted}" in back.stdout, back.stdout + back.stderr
            refused = _cli(env, "models", "promote", helpers.MODEL, "--backend", "onnx-int8")
            assert refused.returncode == 2 and "its gate failed (invariance)" in refused.stderr
    finally:
        eq.close()
        stop_worker(worker, timeout=30)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_tampered_backend_file_is_rebuilt_while_the_job_waits_never_replaced_by_torch(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    env = helpers.worker_env(helpers.other_redis_db(broker_url), isolated_database, EMBEDQ_ARTIFACT_ROOT=str(root))
    env.update(SMALL_GATE)
    gated = _cli(env, "models", "gate", helpers.MODEL, "--backend", "openvino", "--promote")
    assert gated.returncode == 0, gated.stdout + gated.stderr
    with psycopg.connect(isolated_database, autocommit=True) as conn:
        gate = _gates(conn)["openvino"]
    model_file = next(root.glob(f"backend/*/onnx/{backends.ONNX_FILE}"))
    assert _sha256(model_file) == gate["file_sha256"]
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    worker = helpers.start_worker(env, isolated_database, f"tamper-{uuid.uuid4().hex[:6]}@%h", tmp_path / "w.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    try:
        summary = eq.encode(helpers.unique_texts(2)).wait(timeout=WAIT).result
        assert summary["backend"] == "openvino"
        assert _sha256(model_file) == gate["file_sha256"]  # rebuilt: the export is deterministic
        assert "rebuilding" in (tmp_path / "w.log").read_text()
    finally:
        eq.close()
        stop_worker(worker, timeout=30)
