"""Single-text latency: one-text encode jobs, submit to vector in hand in the client.

Measures p50/p99 over --jobs sequential jobs (default 200), each with a distinct corpus text never
seen before (cache misses), after a few warm-up jobs; then the same texts again (cache hits); and
beside them the direct in-process model.encode([text]) over the same texts, with the worker's torch
thread count. The service overhead is the difference. The job timestamps split a miss into
queue (created..started) and worker (started..finished) time.
With --backend onnx-int8 (or auto, onnx) the model's ONNX backends are built and gated first and the
worker serves that backend; the direct baseline stays torch fp32 in this process.
Targets: p50 of a cache-miss job <= 12 ms with torch fp32, <= 6 ms with another backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from _stack import direct_model, load_texts, parser, percentiles, service, table, verdict, write_record


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
    with service(clean=not args.no_clean, backend=args.backend) as eq:
        model = direct_model()
        timed(warmup, lambda t: model.encode([t]))
        direct = timed(texts, lambda t: model.encode([t]))

        timed(warmup, lambda t: eq.encode([t]).result(timeout=60))
        miss, jobs = [], []
        for text in texts:  # as timed(), keeping each job for its timestamps
            t0 = time.perf_counter()
            job = eq.encode([text])
            job.result(timeout=60)
            miss.append(time.perf_counter() - t0)
            jobs.append(job)
        hit = timed(texts, lambda t: eq.encode([t]).result(timeout=60))
        served = (jobs[-1].info().result or {}).get("backend", "torch")
        for job in jobs:
            info = job.info()
            if info.started_at and info.finished_at and (info.result or {}).get("encoded") == 1:
                queue_ms.append((info.started_at - info.created_at).total_seconds() * 1000)
                worker_ms.append((info.finished_at - info.started_at).total_seconds() * 1000)

    d, m, h = percentiles(direct), percentiles(miss), percentiles(hit)
    print(f"\n{args.jobs} single-text jobs per case, sequential; milliseconds")
    table(
        [
            ("p50 cache miss", m["p50_ms"], d["p50_ms"]),
            ("p99 cache miss", m["p99_ms"], d["p99_ms"]),
            ("p50 cache hit", h["p50_ms"], d["p50_ms"]),
            ("p99 cache hit", h["p99_ms"], d["p99_ms"]),
        ]
    )
    print(f"service overhead at p50: miss {m['p50_ms'] - d['p50_ms']:+.1f} ms, hit {h['p50_ms'] - d['p50_ms']:+.1f} ms")
    if queue_ms:
        print(
            f"cache-miss job p50: queue (created..started) {np.median(queue_ms):.1f} ms, "
            f"worker (started..finished) {np.median(worker_ms):.1f} ms, over {len(queue_ms)} jobs"
        )
    target = 12.0 if served == "torch" else 6.0
    print(f"served by backend {served}")
    verdict(f"p50 cache miss <= {target:g} ms (got {m['p50_ms']:.1f})", m["p50_ms"] <= target)
    write_record(
        "latency" if args.backend == "torch" else f"latency-{args.backend}",
        args,
        {
            "direct": d,
            "miss": m,
            "hit": h,
            "overhead_p50_ms": m["p50_ms"] - d["p50_ms"],
            "queue_p50_ms": float(np.median(queue_ms)) if queue_ms else None,
            "worker_p50_ms": float(np.median(worker_ms)) if worker_ms else None,
            "backend": served,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
