"""The index core (embedq/cores/index.py) against FAISS called directly with the same parameters.

Measures, in this process (FAISS on ``--threads`` OpenMP threads, default all cores):
  blas     exact (flat) search of batches of 1, 2, 3, 4, 5, 10, 20, 50, 100 queries over --n vectors, with
           FAISS's BLAS path forced on and off: where it starts to pay sets BLAS_THRESHOLD
  auto     flat one-query latency and HNSW build time at growing sizes: where flat passes a few ms
           sets AUTO_HNSW_MIN
  sweep    recall@10 of HNSW (efConstruction x efSearch) and IVF (nprobe) against exact search
  compare  flat, HNSW and IVF at --n: build time, queries/s one query at a time and in batches of
           100, recall@10, for the wrapper and for faiss directly (the wrapper should add nothing)
  scale    HNSW at --scale-to vectors (default 1,000,000), made from the real ones plus small gaussian
           noise, renormalized; recall@10 against exact search on --scale-queries queries
Vectors are real: normalized all-MiniLM-L6-v2 embeddings of SGD corpus texts (never random vectors,
which give HNSW a recall of 0.2). The first run encodes --n + --queries texts (~4 min for 100k on
2 cores) and caches them in bench/results/index-corpus-<count>.npy; reruns load that file.
Full run (quiet machine): ``HF_HUB_OFFLINE=1 .venv/bin/python bench/index.py``, about 25 min on 2 cores
(encoding ~5 min on the first run, the two 1M HNSW builds, ours and direct, ~12 min; ~6 GB of memory).
Smoke run: ``--n 20000 --queries 200 --scale-to 40000 --scale-queries 100`` (~2 min once cached).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np
from _stack import RESULTS, direct_model, load_texts, parser, table, write_record

from embedq.cores import index as core

K = 10
PARTS = ("blas", "auto", "sweep", "compare", "scale")
NEVER = 2**31 - 1


# ---------------------------------------------------------------- data


def real_vectors(n: int) -> np.ndarray:
    """Normalized embeddings of the first ``n`` corpus texts, cached (and extended) in bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    cached = sorted(RESULTS.glob("index-corpus-*.npy"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    have = np.zeros((0, 384), dtype=np.float32)
    for path in cached:
        have = np.load(path, allow_pickle=False, mmap_mode="r")
        if len(have) >= n:
            return np.array(have[:n])
    texts = load_texts(n - len(have), offset=len(have))
    t0 = time.perf_counter()
    fresh = direct_model().encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    print(f"encoded {len(texts)} corpus texts in {time.perf_counter() - t0:.0f}s")
    vectors = np.concatenate([np.asarray(have), fresh.astype(np.float32)])
    np.save(RESULTS / f"index-corpus-{n}.npy", vectors, allow_pickle=False)
    for path in cached:
        path.unlink()
    return vectors


def scaled_up(vectors: np.ndarray, total: int, seed: int = 0, noise: float = 0.3) -> np.ndarray:
    """``total`` vectors: the real ones, then noisy copies (gaussian of norm ~``noise``), renormalized."""
    rng = np.random.default_rng(seed)
    out = np.empty((total, vectors.shape[1]), dtype=np.float32)
    out[: len(vectors)] = vectors
    sigma = noise / np.sqrt(vectors.shape[1])
    for start in range(len(vectors), total, len(vectors)):
        stop = min(total, start + len(vectors))
        block = vectors[: stop - start] + rng.normal(0, sigma, (stop - start, vectors.shape[1])).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# ---------------------------------------------------------------- timing


def best_of(call: Callable[[], Any], repeat: int = 3) -> float:
    """Fastest of ``repeat`` runs, in seconds (the least disturbed by neighbours)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def qps(search: Callable[[np.ndarray], Any], queries: np.ndarray, batch: int) -> float:
    """Queries per second of ``search`` over ``queries`` in batches of ``batch`` (best of 3)."""

    def run() -> None:
        for start in range(0, len(queries), batch):
            search(queries[start : start + batch])

    return len(queries) / best_of(run)


# ---------------------------------------------------------------- parts


def part_blas(base: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    rows = {}
    print(f"\nflat exact search over {len(base)} x {base.shape[1]}, ms per batch (best of 5):")
    print(f"{'queries':>7} | {'q x dim':>8} | {'no BLAS':>8} | {'BLAS':>8}")
    for nq in (1, 2, 3, 4, 5, 10, 20, 50, 100):
        batch = queries[:nq]
        ms = {}
        for label, threshold in (("no_blas", NEVER), ("blas", 1)):
            faiss.cvar.distance_compute_blas_threshold = threshold
            ms[label] = best_of(lambda b=batch: index.search(b, K), repeat=5) * 1000
        rows[nq] = {"q_x_dim": nq * base.shape[1], **ms}
        print(f"{nq:>7} | {nq * base.shape[1]:>8} | {ms['no_blas']:>8.2f} | {ms['blas']:>8.2f}")
    faiss.cvar.distance_compute_blas_threshold = core.BLAS_THRESHOLD
    first = next((r["q_x_dim"] for r in rows.values() if r["blas"] < r["no_blas"]), None)
    print(f"BLAS first faster at queries x dim = {first}; tasks.index.BLAS_THRESHOLD = {core.BLAS_THRESHOLD}")
    return {"ms_per_batch": rows, "blas_first_faster_at": first}


def median_ms(index: faiss.Index, queries: np.ndarray) -> float:
    """Median milliseconds of one-query searches."""
    times = []
    for row in range(len(queries)):
        t0 = time.perf_counter()
        core.search(index, queries[row : row + 1], K)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def part_auto(vectors: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    rows = {}
    print("\nauto: flat one-query latency (median) vs HNSW (defaults) build time and one-query latency")
    print(f"{'n':>8} | {'flat ms':>8} | {'hnsw build s':>12} | {'hnsw ms':>8}")
    sizes = [n for n in (10_000, 20_000, 30_000, 40_000, 50_000, 75_000, 100_000) if n <= len(vectors)]
    for n in sizes:
        flat, _ = core.build_index(vectors[:n], "flat")
        flat_ms = median_ms(flat, queries[:100])
        t0 = time.perf_counter()
        hnsw, _ = core.build_index(vectors[:n], "hnsw")
        build_s = time.perf_counter() - t0
        rows[n] = {"flat_ms": flat_ms, "hnsw_build_s": build_s, "hnsw_ms": median_ms(hnsw, queries[:100])}
        print(f"{n:>8} | {flat_ms:>8.2f} | {build_s:>12.1f} | {rows[n]['hnsw_ms']:>8.3f}")
    print(f"tasks.index.AUTO_HNSW_MIN = {core.AUTO_HNSW_MIN}")
    return rows


def part_sweep(base: np.ndarray, queries: np.ndarray, exact: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"hnsw": {}, "ivf": {}}
    print(f"\nsweep at n={len(base)}: recall@{K} against exact search, ms per query (one at a time)")
    for ef_construction in (40, 80):
        t0 = time.perf_counter()
        index, _ = core.build_index(base, "hnsw", params={"efConstruction": ef_construction})
        build_s = time.perf_counter() - t0
        for ef in (16, 32, 48, 64, 128):
            params = {"efSearch": ef}
            recall = core.recall_at_k(core.search(index, queries, K, params=params)[1], exact, K)
            ms = 1000 / qps(lambda q, i=index, p=params: core.search(i, q, K, params=p), queries[:200], 1)
            out["hnsw"][f"efC{ef_construction}_ef{ef}"] = {"build_s": build_s, "recall": recall, "ms": ms}
            print(f"hnsw M=32 efConstruction={ef_construction} ({build_s:.1f}s) efSearch={ef}: {recall:.4f} {ms:.3f}")
    t0 = time.perf_counter()
    index, used = core.build_index(base, "ivf")
    build_s = time.perf_counter() - t0
    for nprobe in (4, 8, 16, 32, 64):
        params = {"nprobe": nprobe}
        recall = core.recall_at_k(core.search(index, queries, K, params=params)[1], exact, K)
        ms = 1000 / qps(lambda q, i=index, p=params: core.search(i, q, K, params=p), queries[:200], 1)
        out["ivf"][f"nprobe{nprobe}"] = {"nlist": used["nlist"], "build_s": build_s, "recall": recall, "ms": ms}
        print(f"ivf nlist={used['nlist']} ({build_s:.1f}s) nprobe={nprobe}: {recall:.4f} {ms:.3f}")
    return out


def _direct(base: np.ndarray, kind: str, used: dict[str, Any]) -> faiss.Index:
    """The same index built with faiss alone, from the parameters the wrapper reports."""
    dim = base.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, used["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = used["efConstruction"]
        index.hnsw.efSearch = used["efSearch"]
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, used["nlist"], faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = used["seed"]
        index.cp.min_points_per_centroid = 1
        index.train(base)
        index.nprobe = used["nprobe"]
    index.add(base)
    return index


def compare(base: np.ndarray, queries: np.ndarray, exact: np.ndarray, kind: str) -> dict[str, Any]:
    """One kind, wrapper then faiss directly: build s, qps at batch 1 and 100, recall@10."""
    t0 = time.perf_counter()
    ours, used = core.build_index(base, kind)
    ours_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    direct = _direct(base, kind, used)
    direct_build = time.perf_counter() - t0
    single = queries[: min(len(queries), 300)]
    figures = {
        "params": used,
        "build_s": (ours_build, direct_build),
        "qps_1": (
            qps(lambda q: core.search(ours, q, K), single, 1),
            qps(lambda q: direct.search(q, K), single, 1),
        ),
        "qps_100": (
            qps(lambda q: core.search(ours, q, K), queries, 100),
            qps(lambda q: direct.search(q, K), queries, 100),
        ),
        "recall": (
            core.recall_at_k(core.search(ours, queries, K)[1], exact, K),
            core.recall_at_k(direct.search(queries, K)[1], exact, K),
        ),
    }
    print(f"\n{kind} at n={len(base)}: {used}")
    table(
        [
            ("build s", *figures["build_s"]),
            ("queries/s, one at a time", *figures["qps_1"]),
            ("queries/s, batches of 100", *figures["qps_100"]),
            (f"recall@{K} vs exact", *figures["recall"]),
        ],
        fmt="{:.3f}",
    )
    return figures


def part_scale(real: np.ndarray, total: int, nq: int) -> dict[str, Any]:
    vectors = scaled_up(real, total)
    rng = np.random.default_rng(1)
    queries = scaled_up(real[rng.choice(len(real), nq, replace=False)], 2 * nq, seed=2)[nq:]  # unseen noisy copies
    t0 = time.perf_counter()
    flat, _ = core.build_index(vectors, "flat")
    exact = core.search(flat, queries, K)[1]
    exact_s = time.perf_counter() - t0
    del flat
    figures = compare(vectors, queries, exact, "hnsw")
    figures["exact_s"] = exact_s
    return figures


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=100_000, help="real vectors in the index (default 100000)")
    p.add_argument("--queries", type=int, default=1_000, help="held-out query texts (default 1000)")
    p.add_argument("--scale-to", type=int, default=1_000_000, help="vectors of the scale-up part; 0 skips it")
    p.add_argument("--scale-queries", type=int, default=500, help="queries of the scale-up part (default 500)")
    p.add_argument("--threads", type=int, default=None, help="FAISS OpenMP threads (default: all cores)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    print(f"configure: {core.configure(threads=args.threads)}")
    vectors = real_vectors(args.n + args.queries)
    base, queries = vectors[: args.n], vectors[args.n :]
    exact = core.exact_search(base, queries, K)[1]
    figures: dict[str, Any] = {}
    if "blas" in parts:
        figures["blas"] = part_blas(base, queries)
    if "auto" in parts:
        figures["auto"] = part_auto(base, queries)
    if "sweep" in parts:
        figures["sweep"] = part_sweep(base, queries, exact)
    if "compare" in parts:
        figures["compare"] = {kind: compare(base, queries, exact, kind) for kind in core.KINDS}
    if "scale" in parts and args.scale_to:
        figures["scale"] = part_scale(base, args.scale_to, args.scale_queries)
    write_record("index", args, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
