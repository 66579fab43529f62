"""Bulk encode throughput: one job of N distinct corpus texts, service against the library.

Measures, in one run and back to back (the worker is idle while the direct baseline runs):
  direct   SentenceTransformer.encode(texts, batch_size=32) in this process, after a warm-up, with
           torch threads = the worker's (EMBEDQ_TORCH_THREADS, default all cores)
  service  submit one encode job, wait, numpy array in hand in the client (end-to-end wall time)
  resubmit the same job again: every text is a cache hit
With --rounds R both are measured R times, alternating, the cache emptied before each service run;
the best round of each side is reported (all are recorded).
Targets: service/direct texts/s >= 0.9; resubmit >= 20x faster than the first submit; vectors equal
to the direct ones (max abs diff printed).
With --backend auto (or onnx-int8, onnx) the model's ONNX backends are built and gated first and the
worker serves the fastest that passed its quality gate; the direct baseline stays torch fp32 in this
process. Targets then: service/direct texts/s >= 1.8, and cosine to the direct vectors >= 0.98.
"""

from __future__ import annotations

import time

import numpy as np
from _stack import clear_cache, direct_model, load_texts, parser, service, table, verdict, worker_threads, write_record


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=20_000, help="texts in the job (default 20000)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--rounds", type=int, default=1, help="direct/service measurements, alternating (default 1)")
    p.add_argument("--backend", default="torch", help="the worker's EMBEDQ_BACKEND (default torch; auto: gate first)")
    args = p.parse_args()
    texts, warmup = load_texts(args.n), load_texts(256, offset=args.n)
    direct_runs: list[float] = []
    service_runs: list[float] = []
    with service(clean=not args.no_clean, backend=args.backend) as eq:
        model = direct_model()
        model.encode(warmup, batch_size=args.batch_size)
        eq.encode(warmup, batch_size=args.batch_size).result(timeout=600)
        for i in range(args.rounds):
            t0 = time.perf_counter()
            direct = model.encode(texts, batch_size=args.batch_size)
            direct_runs.append(time.perf_counter() - t0)

            if not args.no_clean:
                clear_cache(str(eq.settings.database_url))
            t0 = time.perf_counter()
            job = eq.encode(texts, batch_size=args.batch_size)
            ours = job.result(timeout=max(600.0, args.n / 10))
            service_runs.append(time.perf_counter() - t0)
            info = job.info()
            print(f"round {i + 1}: direct {direct_runs[-1]:.2f}s, service {service_runs[-1]:.2f}s", flush=True)

        t0 = time.perf_counter()
        job2 = eq.encode(texts, batch_size=args.batch_size)
        again = job2.result(timeout=600)
        resubmit_s = time.perf_counter() - t0
        info2 = job2.info()

    direct_s, service_s = min(direct_runs), min(service_runs)
    worker_s = (info.finished_at - info.started_at).total_seconds() if info.finished_at and info.started_at else 0.0
    first, second = info.result or {}, info2.result or {}
    diff = float(np.abs(ours - direct).max())
    unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    cosine = float((unit * (direct / np.linalg.norm(direct, axis=1, keepdims=True))).sum(axis=1).min())
    exact = args.backend == "torch"
    diff_again = float(np.abs(again - ours).max())
    speedup = service_runs[-1] / resubmit_s
    ratio = direct_s / service_s
    print(f"\n{args.n} texts, batch size {args.batch_size}, {worker_threads()} torch threads on both sides")
    table(
        [
            ("texts/s", args.n / service_s, args.n / direct_s),
            ("wall s", service_s, direct_s),
            ("worker s (started..finished, last round)", worker_s, direct_runs[-1]),
            ("wall s (resubmit, cached)", resubmit_s, None),
        ],
        fmt="{:.2f}",
    )
    print(f"first submit: encoded {first.get('encoded')}, cached {first.get('cached')}")
    print(f"resubmit:     encoded {second.get('encoded')}, cached {second.get('cached')}")
    print(f"resubmit speed-up {speedup:.1f}x; max |service - direct| {diff:.2e}; max |resubmit - first| {diff_again}")
    print(f"served by backend {first.get('backend', 'torch')}; min cosine to the direct vectors {cosine:.4f}")
    target = 0.9 if exact else 1.8
    verdict(f"service/direct texts/s >= {target} (got {ratio:.3f})", ratio >= target)
    verdict(f"resubmit >= 20x faster than the first submit (got {speedup:.1f}x)", speedup >= 20)
    if exact:
        verdict(f"vectors equal to the direct ones (max abs diff {diff:.2e} <= 1e-5)", diff <= 1e-5)
    else:
        verdict(f"cosine to the direct vectors >= 0.98 (min {cosine:.4f})", cosine >= 0.98)
    write_record(
        "encode" if exact else f"encode-{args.backend}",
        args,
        {
            "direct_s": direct_runs,
            "service_s": service_runs,
            "worker_s": worker_s,
            "resubmit_s": resubmit_s,
            "direct_texts_per_s": args.n / direct_s,
            "service_texts_per_s": args.n / service_s,
            "service_over_direct": ratio,
            "resubmit_speedup": speedup,
            "max_abs_diff": diff,
            "min_cosine": cosine,
            "backend": first.get("backend", "torch"),
            "first": first,
            "resubmit": second,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
