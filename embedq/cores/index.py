"""The index core: FAISS indexes over one collection's vectors, built, searched, saved.

Every index uses inner product (``METRIC_INNER_PRODUCT``): the caller passes
vectors already normalized where the collection uses cosine, so scores are
cosines there. Arrays in, arrays and plain values out; the only global state
touched is FAISS's own, and only in ``configure()``, which the worker calls
once at start.

Figures (the project's 2-core machine, neighbours busy, faiss-cpu 1.15.1,
normalized all-MiniLM-L6-v2 embeddings of SGD corpus texts, 384 dims, 1,000
held-out texts as queries; ``bench/index.py`` measures them):

- ``AUTO_HNSW_MIN = 30_000``. Flat search of one query on 1 thread, median,
  cache cold / hot: 10k 1.4 / 0.6 ms, 20k 2.6 / 1.1, 30k 3.8 / 1.7,
  40k 5.0 / 2.3, 50k 6.1 / 3.3, 75k 9.2 / 7.5, 99k 11.8 / 11.3 ms: it passes
  a few ms at about 30k. HNSW there costs little: build 1.1 s at 30k and
  6.3 s at 100k with efConstruction 40 (2 threads), 0.1 ms a query.
- ``BLAS_THRESHOLD = 1152`` (3 queries x 384 dims; FAISS compares queries x dim
  with it). Flat 99k, ms per batch, 1 thread, scan / BLAS: 1 query 13.2 / 28.7,
  2: 26.0 / 28.9, 3: 38.5 / 31.2, 4: 51.2 / 29.0, 10: 119 / 35, 100: 1288 / 78
  (FAISS's default, 128,000, keeps 100 queries on the scan: 16x slower).
  On 2 threads BLAS wins from 2 queries (100: 583 / 48); a single query of up
  to 1,024 dims stays on the scan, which is 2x faster for one.
- HNSW ``M=32, efConstruction=80, efSearch=64``: recall@10 0.981 at 99k,
  0.12 ms a query, build 10.5 s (efConstruction 40: 0.974, build 6.3 s;
  efSearch 32: 0.963, 48: 0.976, 128: 0.991).
- IVF ``nlist = 4*sqrt(n)`` (1,259 at 99k), ``nprobe=16``: recall@10 0.980,
  0.21 ms a query, training + adding 8.5 s (nprobe 8: 0.963, 32: 0.987).
- Threads: with one busy neighbour on 2 cores, flat one-query search on 2
  OpenMP threads took 15-40 ms where 1 thread took 0.6-11 ms (the second
  thread waits for a core). Give ``configure(threads=...)`` the worker's share
  of the cores, as for torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from api_client.errors import BadRequest

KINDS = ("flat", "hnsw", "ivf")
AUTO_HNSW_MIN = 30_000
"""``auto`` picks HNSW from this many vectors on (see the module docstring for the figures)."""

BLAS_THRESHOLD = 1152
"""``faiss.cvar.distance_compute_blas_threshold`` set by ``configure()`` (queries x dim from which BLAS is used)."""

HNSW_DEFAULTS = {"M": 32, "efConstruction": 80, "efSearch": 64}
IVF_NPROBE = 16
PAD_SCORE = float(np.finfo(np.float32).min)
"""Score beside a -1 label, as FAISS pads (-FLT_MAX: unlike -inf, plain JSON can hold it)."""
MIN_POINTS_PER_CENTROID = 39  # FAISS's own k-means minimum: fewer points per list and it warns
GATE_SAMPLE = 200
"""Queries of a reindex's recall gate (``gate_recall``): documents of the collection, evenly spaced."""
GATE_K = 10


def configure(*, threads: int | None = None, blas_threshold: int = BLAS_THRESHOLD) -> dict[str, int]:
    """Set FAISS's process-wide settings once, at worker start; returns them.

    Args:
        threads: OpenMP threads for FAISS (None leaves OpenMP's default: all cores).
        blas_threshold: queries x dim from which exact search uses BLAS (FAISS's default, 128,000,
            made 100-query batches 16x slower than needed here; see the module docstring).
    """
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    faiss.cvar.distance_compute_blas_threshold = blas_threshold
    return {"threads": faiss.omp_get_max_threads(), "blas_threshold": faiss.cvar.distance_compute_blas_threshold}


def choose_kind(n: int, requested: str) -> str:
    """The index kind for ``n`` vectors: ``requested``, or for ``auto`` flat below ``AUTO_HNSW_MIN``, else HNSW."""
    if requested == "auto":
        return "flat" if n < AUTO_HNSW_MIN else "hnsw"
    if requested not in KINDS:
        raise BadRequest(
            f"unknown index kind {requested!r}; expected auto or one of {', '.join(KINDS)}",
            detail={"field": "index_kind", "value": str(requested)},
        )
    return requested


def _as_matrix(array: Any, what: str, dim: int | None = None) -> np.ndarray:
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        want = f"[n, {dim}]" if dim is not None else "[n, dim]"
        raise BadRequest(f"{what} must be a {want} float32 array; got shape {matrix.shape}", detail={"field": what})
    return matrix


def ivf_nlist(n: int) -> int:
    """Lists of an IVF index over ``n`` vectors: ~4*sqrt(n), cut so each list gets FAISS's minimum of points."""
    return max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))


def build_index(
    vectors: np.ndarray, kind: str, *, params: dict[str, Any] | None = None, seed: int = 0
) -> tuple[faiss.Index, dict[str, Any]]:
    """Build an index of ``kind`` over ``vectors`` (float32 ``[n, dim]``); returns it and the parameters used.

    ``params`` overrides the defaults (hnsw: ``M``, ``efConstruction``, ``efSearch``; ivf: ``nlist``,
    ``nprobe``). The returned dict holds every parameter that shapes the index or its default search,
    for the manifest. HNSW builds on several threads are not bit-for-bit repeatable; IVF training is,
    for a given ``seed``.
    """
    matrix = _as_matrix(vectors, "vectors")
    n, dim = matrix.shape
    params = dict(params or {})
    if kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(dim)
        used: dict[str, Any] = {}
    elif kind == "hnsw":
        used = {key: int(params.get(key, value)) for key, value in HNSW_DEFAULTS.items()}
        index = faiss.IndexHNSWFlat(dim, used["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = used["efConstruction"]
        index.hnsw.efSearch = used["efSearch"]
    elif kind == "ivf":
        if n == 0:
            raise BadRequest("an ivf index needs at least one vector to train on", detail={"field": "vectors"})
        nlist = min(int(params.get("nlist", ivf_nlist(n))), n)
        used = {"nlist": nlist, "nprobe": min(int(params.get("nprobe", IVF_NPROBE)), nlist), "seed": seed}
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.min_points_per_centroid = 1  # nlist is already sized to the data; no warning on stderr
        index.train(matrix)
        index.nprobe = used["nprobe"]
    else:
        raise BadRequest(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}", detail={"field": "kind"})
    index.add(matrix)
    return index, {"kind": kind, "dim": dim, "n": n, "metric": "inner_product", **used}


def _search_parameters(index: faiss.Index, params: dict[str, Any]) -> faiss.SearchParameters | None:
    """Per-call search parameters (nothing is changed on the shared index object)."""
    if not params:
        return None
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexHNSW) and "efSearch" in params:
        return faiss.SearchParametersHNSW(efSearch=int(params["efSearch"]))  # type: ignore[attr-defined]  # stub lags
    if isinstance(inner, faiss.IndexIVF) and "nprobe" in params:
        return faiss.SearchParametersIVF(nprobe=int(params["nprobe"]))  # type: ignore[call-arg]  # stub lags
    return None


def search(
    index: faiss.Index, queries: np.ndarray, k: int, *, params: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` by inner product: ``(scores float32 [nq, k], labels int64 [nq, k])``, best first, -1 padding.

    ``params`` (``efSearch`` for HNSW, ``nprobe`` for IVF) apply to this call only.
    """
    if k < 1:
        raise BadRequest(f"k must be at least 1; got {k}", detail={"field": "k"})
    matrix = _as_matrix(queries, "queries", index.d)
    scores, labels = index.search(matrix, k, params=_search_parameters(index, params or {}))
    return scores.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` over a small set (recent upserts, a filtered subset), in numpy.

    Same conventions as ``search``: labels index into ``vectors``, best first, ties by lower label,
    -1 labels (score ``PAD_SCORE``) where fewer than ``k`` vectors exist.
    """
    if k < 1:
        raise BadRequest(f"k must be at least 1; got {k}", detail={"field": "k"})
    base = _as_matrix(vectors, "vectors")
    matrix = _as_matrix(queries, "queries", base.shape[1])
    nq, n = matrix.shape[0], base.shape[0]
    scores = np.full((nq, k), PAD_SCORE, dtype=np.float32)
    labels = np.full((nq, k), -1, dtype=np.int64)
    if n == 0 or nq == 0:
        return scores, labels
    sims = matrix @ base.T
    take = min(k, n)
    # A stable sort of the negated scores keeps tied vectors in label order.
    order = np.argsort(-sims, axis=1, kind="stable")[:, :take]
    labels[:, :take] = order
    scores[:, :take] = np.take_along_axis(sims, order, axis=1)
    return scores, labels


def recall_at_k(approx_labels: np.ndarray, exact_labels: np.ndarray, k: int) -> float:
    """Mean over queries of |approx ∩ exact| / min(k, valid exact labels) in the first ``k`` columns (-1 ignored)."""
    total = 0.0
    rows = 0
    for approx, exact in zip(np.asarray(approx_labels)[:, :k], np.asarray(exact_labels)[:, :k], strict=True):
        truth = set(exact[exact >= 0].tolist())
        if truth:
            total += len(truth & set(approx[approx >= 0].tolist())) / min(k, len(truth))
            rows += 1
    return total / rows if rows else 1.0


def gate_recall(
    index: faiss.Index,
    vectors: np.ndarray,
    *,
    params: dict[str, Any] | None = None,
    sample: int = GATE_SAMPLE,
    k: int = GATE_K,
) -> float:
    """recall@k of ``index`` against exact search over ``vectors``, the vectors it was built from: a reindex's gate.

    The queries are ``sample`` of those vectors, evenly spaced (the collection's
    own documents); ``params`` are the index's search parameters. An empty
    index has nothing to miss: 1.0.
    """
    n = len(vectors)
    if n == 0:
        return 1.0
    rows = np.linspace(0, n - 1, num=min(sample, n)).astype(np.int64)
    queries = vectors[rows]
    exact = build_index(vectors, "flat")[0]
    _, truth = search(exact, queries, min(k, n))
    _, found = search(index, queries, min(k, n), params=params)
    return recall_at_k(found, truth, min(k, n))


def save_index(index: faiss.Index, folder: Path, name: str = "index.faiss") -> Path:
    """Write ``index`` in FAISS's own format (not pickle) to ``folder/name``; returns the path."""
    path = folder / name
    faiss.write_index(index, str(path))
    return path


def load_index(path: Path) -> faiss.Index:
    """Read an index written by ``save_index`` (verify its artifact first)."""
    return faiss.read_index(str(path))
