"""The index core against exact search.

Recall is measured on real embeddings only (Banking77 texts and variants of them, encoded with the
bundled model): on random vectors HNSW's recall says nothing about real data. Shape, label and
padding checks use small fixed-seed clustered gaussians.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from api_client.errors import BadRequest
from embedq.cores import index as core
from embedq.cores.artifacts import verify_artifact, write_artifact
from tests import helpers

K = 10


@pytest.fixture(scope="module")
def real(st_model) -> tuple[np.ndarray, np.ndarray]:
    """``(base [3000, 384], queries [200, 384])``, normalized: 2,000 Banking77 texts plus 1,000 reworded, and
    200 queries reworded another way (none of them in the base)."""
    texts = helpers.banking_texts(2000)
    base = texts + [f"Please help: {text}" for text in texts[1000:]]
    queries = [f"{text.lower().rstrip('?.!')}, thanks" for text in texts[:200]]
    vectors = st_model.encode(base + queries, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return vectors[:3000].astype(np.float32), vectors[3000:].astype(np.float32)


@pytest.fixture(scope="module")
def exact(real: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    base, queries = real
    return core.exact_search(base, queries, K)


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Normalized gaussian vectors around 8 centres: enough structure for IVF to train on."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    vectors = centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_flat_is_exact_search(real: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = real
    index, used = core.build_index(base, "flat")
    scores, labels = core.search(index, queries, K)
    assert used == {"kind": "flat", "dim": 384, "n": 3000, "metric": "inner_product"}
    assert scores.dtype == np.float32 and labels.dtype == np.int64 and labels.shape == (200, K)
    np.testing.assert_array_equal(labels, exact[1])
    np.testing.assert_allclose(scores, exact[0], atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, base[labels]), atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_reach_their_recall(
    kind: str, real: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray]
) -> None:
    base, queries = real
    index, used = core.build_index(base, kind)
    recall = core.recall_at_k(core.search(index, queries, K)[1], exact[1], K)
    assert recall >= 0.95, (used, recall)


def test_search_parameters_apply_to_one_call(
    real: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray]
) -> None:
    base, queries = real
    index, used = core.build_index(base, "ivf", params={"nlist": 64, "nprobe": 64})
    assert used["nlist"] == 64 and used["nprobe"] == 64
    narrow = core.recall_at_k(core.search(index, queries, K, params={"nprobe": 1})[1], exact[1], K)
    full = core.recall_at_k(core.search(index, queries, K)[1], exact[1], K)
    assert narrow < 0.95 <= full == pytest.approx(1.0)
    assert index.nprobe == 64
    hnsw, _ = core.build_index(base, "hnsw")
    core.search(hnsw, queries, K, params={"efSearch": 8})
    assert hnsw.hnsw.efSearch == core.HNSW_DEFAULTS["efSearch"]


def test_choose_kind() -> None:
    assert core.choose_kind(0, "auto") == "flat"
    assert core.choose_kind(core.AUTO_HNSW_MIN - 1, "auto") == "flat"
    assert core.choose_kind(core.AUTO_HNSW_MIN, "auto") == "hnsw"
    for kind in core.KINDS:
        assert core.choose_kind(10, kind) == kind
    with pytest.raises(BadRequest, match="unknown index kind 'annoy'"):
        core.choose_kind(10, "annoy")
    with pytest.raises(BadRequest):
        core.build_index(clustered(10), "auto")


def test_ivf_lists_follow_the_data() -> None:
    assert core.ivf_nlist(1) == 1
    assert core.ivf_nlist(100) == 2  # 4*sqrt(100) = 40 lists would get 2.5 points each
    assert core.ivf_nlist(100_000) == 1265
    assert core.ivf_nlist(1_000_000) == 4000
    _, used = core.build_index(clustered(5), "ivf", params={"nlist": 50})
    assert used["nlist"] == 5 and used["nprobe"] == 5


@pytest.mark.parametrize("kind", core.KINDS)
def test_fewer_vectors_than_k_pad_with_minus_one(kind: str) -> None:
    vectors = clustered(7)
    index, _ = core.build_index(vectors, kind)
    scores, labels = core.search(index, vectors[:3], K)
    exact_scores, exact_labels = core.exact_search(vectors, vectors[:3], K)
    assert labels.shape == scores.shape == (3, K)
    np.testing.assert_array_equal(labels[:, 7:], -1)
    np.testing.assert_array_equal(scores[:, 7:], core.PAD_SCORE)
    np.testing.assert_array_equal(labels, exact_labels)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    assert sorted(labels[0, :7]) == list(range(7))


def test_exact_search_conventions() -> None:
    vectors = clustered(6, dim=4)
    vectors[4] = vectors[1]  # a tie: the lower label comes first
    scores, labels = core.exact_search(vectors, vectors[[1]], 3)
    assert labels[0, :2].tolist() == [1, 4] and scores[0, 0] == scores[0, 1]
    empty_scores, empty_labels = core.exact_search(np.zeros((0, 4), np.float32), vectors[:2], 3)
    assert empty_labels.tolist() == [[-1] * 3] * 2 and np.all(empty_scores == core.PAD_SCORE)
    assert core.exact_search(vectors, np.zeros((0, 4), np.float32), 3)[1].shape == (0, 3)
    with pytest.raises(BadRequest, match="queries"):
        core.exact_search(vectors, np.zeros((2, 5), np.float32), 3)
    with pytest.raises(BadRequest, match="k must"):
        core.exact_search(vectors, vectors, 0)


def test_recall_at_k() -> None:
    exact = np.array([[1, 2, 3], [4, -1, -1], [-1, -1, -1]])
    approx = np.array([[3, 9, 1], [4, 7, -1], [5, 6, 7]])
    assert core.recall_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 1) / 2)  # the empty row does not count
    assert core.recall_at_k(approx[:, :1], exact[:, :1], 1) == pytest.approx(0.5)


@pytest.mark.parametrize("kind", core.KINDS)
def test_save_and_load_give_the_same_results(kind: str, tmp_path: Path) -> None:
    vectors = clustered(500)
    index, used = core.build_index(vectors, kind)
    before = core.search(index, vectors[:20], K)
    path = write_artifact(tmp_path, "index", "faq", "1", lambda folder: core.save_index(index, folder), used)
    assert verify_artifact(path)["meta"] == used
    loaded = core.load_index(path / "index.faiss")
    after = core.search(loaded, vectors[:20], K)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])


def test_configure_sets_the_blas_threshold() -> None:
    old = faiss.cvar.distance_compute_blas_threshold
    try:
        assert core.configure(blas_threshold=1234)["blas_threshold"] == 1234
        assert faiss.cvar.distance_compute_blas_threshold == 1234
        assert core.configure()["blas_threshold"] == core.BLAS_THRESHOLD
    finally:
        faiss.cvar.distance_compute_blas_threshold = old


def test_bad_arrays_are_refused() -> None:
    index, _ = core.build_index(clustered(20), "flat")
    with pytest.raises(BadRequest, match="queries"):
        core.search(index, np.zeros((2, 31), np.float32), 3)
    with pytest.raises(BadRequest, match="vectors"):
        core.build_index(np.zeros(32, np.float32), "flat")
    with pytest.raises(BadRequest, match="at least one vector"):
        core.build_index(np.zeros((0, 32), np.float32), "ivf")
