"""Single-text latency: one-text encode jobs, submit to vector in hand in the client.

Measures p50/p99 over --jobs sequential jobs (default 200), each with a distinct corpus text never
seen before (cache misses), after a few warm-up jobs; then the same texts again (cache hits); and
beside them the direct in-process model.encode([text]) over the same texts, with the thread count of
the worker's interactive consumer (EMBEDQ_TORCH_THREADS, which the bench sets: all cores): torch fp32,
and with --backend other than torch also the backend the service serves, loaded from the files its
gate judged. The service overhead is the difference to the direct call of the same backend. The job
timestamps split a miss into queue (created..started) and worker (started..finished) time.
With --backend auto (or a backend: openvino, openvino-bf16, onnx, ...) the model's backends are gated
first and one promoted fleet-wide (auto: the fastest that passed), and the worker serves it.
Targets: p50 of a cache-miss job <= 6 ms with the gated default (--backend auto), <= 10 ms with
torch fp32.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from _stack import (
    direct_backend,
    direct_model,
    load_texts,
    parser,
    percentiles,
    service,
    table,
    verdict,
    worker_threads,
    write_record,
)


def timed(texts: list[str], call: Callable[[str], object]) -> list[float]:
    times = []
    for text in texts:
        t0 = time.perf_counter()
        call(text)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=200, help="measured jobs per case (default 200)")
    p.add_argument("--warmup", type=int, default=10, help="unmeasured jobs first (default 10)")
    p.add_argument("--backend", default="torch", help="the worker's EMBEDQ_BACKEND (default torch; others: gate first)")
    args = p.parse_args()
    texts = load_texts(args.jobs)
    warmup = load_texts(args.warmup, offset=args.jobs)
    queue_ms, worker_ms = [], []
    threads = worker_threads()  # the interactive consumer's: service() sets EMBEDQ_TORCH_THREADS to it
    same: list[float] = []
    with service(clean=not args.no_clean, backend=args.backend, threads=threads) as eq:
        probe = eq.encode(["embedq latency bench: which backend serves this one?"])
        probe.result(timeout=60)
        served = (probe.info().result or {}).get("backend", "torch")
        model = direct_model(threads)
        timed(warmup, lambda t: model.encode([t]))
        direct = timed(texts, lambda t: model.encode([t]))
        if served != "torch":
            other = direct_backend(eq, served, threads)
            timed(warmup, lambda t: other.encode([t]))
            same = timed(texts, lambda t: other.encode([t]))

        timed(warmup, lambda t: eq.encode([t]).result(timeout=60))
        miss, jobs = [], []
        for text in texts:  # as timed(), keeping each job for its timestamps
            t0 = time.perf_counter()
            job = eq.encode([text])
            job.result(timeout=60)
            miss.append(time.perf_counter() - t0)
            jobs.append(job)
        hit = timed(texts, lambda t: eq.encode([t]).result(timeout=60))
        served = (jobs[-1].info().result or {}).get("backend", served)
        for job in jobs:
            info = job.info()
            if info.started_at and info.finished_at and (info.result or {}).get("encoded") == 1:
                queue_ms.append((info.started_at - info.created_at).total_seconds() * 1000)
                worker_ms.append((info.finished_at - info.started_at).total_seconds() * 1000)

    d, m, h = percentiles(direct), percentiles(miss), percentiles(hit)
    s = percentiles(same) if same else d  # the direct call of the backend the service ran
    print(f"\n{args.jobs} single-text jobs per case, sequential; milliseconds; {threads} threads")
    print(f"served by backend {served}")
    table(
        [
            ("p50 cache miss", m["p50_ms"], s["p50_ms"]),
            ("p99 cache miss", m["p99_ms"], s["p99_ms"]),
            ("p50 cache hit", h["p50_ms"], s["p50_ms"]),
            ("p99 cache hit", h["p99_ms"], s["p99_ms"]),
        ],
        columns=("embedq", "same backend" if same else "torch fp32"),
    )
    if same:
        print("\ndirect one-text call in this process")
        table(
            [
                ("p50", s["p50_ms"], d["p50_ms"]),
                ("p99", s["p99_ms"], d["p99_ms"]),
                ("mean", s["mean_ms"], d["mean_ms"]),
            ],
            columns=(served, "torch fp32"),
        )
    print(f"service overhead at p50: miss {m['p50_ms'] - s['p50_ms']:+.1f} ms, hit {h['p50_ms'] - s['p50_ms']:+.1f} ms")
    if queue_ms:
        print(
            f"cache-miss job p50: queue (created..started) {np.median(queue_ms):.1f} ms, "
            f"worker (started..finished) {np.median(worker_ms):.1f} ms, over {len(queue_ms)} jobs"
        )
    target = 10.0 if served == "torch" else 6.0
    verdict(f"p50 cache miss <= {target:g} ms (got {m['p50_ms']:.1f})", m["p50_ms"] <= target)
    write_record(
        "latency" if args.backend == "torch" else f"latency-{args.backend}",
        args,
        {
            "threads": threads,
            "direct": d,
            "direct_same": s if same else None,
            "direct_same_over_torch_p50": s["p50_ms"] / d["p50_ms"] if same else None,
            "miss": m,
            "hit": h,
            "overhead_p50_ms": m["p50_ms"] - s["p50_ms"],
            "queue_p50_ms": float(np.median(queue_ms)) if queue_ms else None,
            "worker_p50_ms": float(np.median(worker_ms)) if worker_ms else None,
            "backend": served,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
