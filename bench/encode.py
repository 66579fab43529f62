"""Bulk encode throughput: one job of N distinct corpus texts, service against the library.

Measures, in one run and back to back (the worker is idle while the direct baselines run):
  direct   SentenceTransformer.encode(texts, batch_size) in this process, after a warm-up, with the
           worker's batch size and threads (EMBEDQ_TORCH_THREADS, default all cores): torch fp32, and
           with --backend other than torch also the backend the service serves, loaded from the very
           files its gate judged (the artifact folder of its ``models`` row)
  service  submit one encode job (batch lane), wait, numpy array in hand in the client (end-to-end wall time)
  resubmit the same job again: every text is a cache hit
With --rounds R each is measured R times, alternating, the cache emptied before each service run;
the best round of each is reported (all are recorded).
Targets with torch: service/direct texts/s >= 0.9; resubmit >= 20x faster than the first submit;
vectors equal to the direct ones (max abs diff printed).
With --backend auto (or a backend: openvino, openvino-bf16, onnx, ...) the model's backends are gated
first and one promoted fleet-wide (auto: the fastest that passed), and the worker serves it. Targets
then: service/direct torch fp32 texts/s >= 2.2 (what the backend buys a user), service/direct same
backend >= 0.9 (what the service costs), resubmit >= 20x, and cosine to the torch vectors >= 0.98.
"""

from __future__ import annotations

import time

import numpy as np
from _stack import (
    clear_cache,
    direct_backend,
    direct_model,
    load_texts,
    parser,
    service,
    table,
    verdict,
    worker_threads,
    write_record,
)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine between matching rows of ``a`` and ``b``."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return float((a * (b / np.linalg.norm(b, axis=1, keepdims=True))).sum(axis=1).min())


def timed(model, texts: list[str], batch_size: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size)
    return time.perf_counter() - t0, vectors


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=20_000, help="texts in the job (default 20000)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--rounds", type=int, default=1, help="direct/service measurements, alternating (default 1)")
    p.add_argument("--backend", default="torch", help="the worker's EMBEDQ_BACKEND (default torch; others: gate first)")
    args = p.parse_args()
    texts, warmup = load_texts(args.n), load_texts(256, offset=args.n)
    threads = worker_threads()
    direct_runs: list[float] = []
    same_runs: list[float] = []
    service_runs: list[float] = []
    with service(clean=not args.no_clean, backend=args.backend, threads=threads) as eq:
        # The warm-up job goes to the batch lane, whose consumer runs the measured job.
        served = eq.encode(warmup, batch_size=args.batch_size, lane="batch")
        served.result(timeout=600)
        backend = (served.info().result or {}).get("backend", "torch")
        model = direct_model(threads)
        model.encode(warmup, batch_size=args.batch_size)
        same = direct_backend(eq, backend, threads) if backend != "torch" else None
        if same is not None:
            same.encode(warmup, batch_size=args.batch_size)
        for i in range(args.rounds):
            seconds, direct = timed(model, texts, args.batch_size)
            direct_runs.append(seconds)
            line = f"round {i + 1}: direct torch {seconds:.2f}s"
            if same is not None:
                seconds, direct_same = timed(same, texts, args.batch_size)
                same_runs.append(seconds)
                line += f", direct {backend} {seconds:.2f}s"

            if not args.no_clean:
                clear_cache(str(eq.settings.database_url))
            t0 = time.perf_counter()
            job = eq.encode(texts, batch_size=args.batch_size, lane="batch")
            ours = job.result(timeout=max(600.0, args.n / 10))
            service_runs.append(time.perf_counter() - t0)
            info = job.info()
            print(f"{line}, service {service_runs[-1]:.2f}s", flush=True)

        t0 = time.perf_counter()
        job2 = eq.encode(texts, batch_size=args.batch_size, lane="batch")
        again = job2.result(timeout=600)
        resubmit_s = time.perf_counter() - t0
        info2 = job2.info()

    direct_s, service_s = min(direct_runs), min(service_runs)
    same_s = min(same_runs) if same_runs else None
    worker_s = (info.finished_at - info.started_at).total_seconds() if info.finished_at and info.started_at else 0.0
    first, second = info.result or {}, info2.result or {}
    backend = first.get("backend", backend)
    diff = float(np.abs(ours - direct).max())
    cosine = min_cosine(ours, direct)
    exact = backend == "torch"
    diff_same = float(np.abs(ours - direct_same).max()) if same_runs else None
    diff_again = float(np.abs(again - ours).max())
    speedup = service_runs[-1] / resubmit_s
    ratio = direct_s / service_s
    ratio_same = same_s / service_s if same_s else None
    print(f"\n{args.n} texts, batch size {args.batch_size}, {threads} threads in the worker and in this process")
    print(f"served by backend {backend}")
    table(
        [
            ("texts/s", args.n / service_s, args.n / direct_s),
            ("wall s", service_s, direct_s),
            ("worker s (started..finished, last round)", worker_s, direct_runs[-1]),
            ("wall s (resubmit, cached)", resubmit_s, None),
        ],
        fmt="{:.2f}",
        columns=("embedq", "torch fp32"),
    )
    if same_s:
        print()
        table(
            [
                ("texts/s", args.n / service_s, args.n / same_s),
                ("wall s", service_s, same_s),
                ("worker s (started..finished, last round)", worker_s, same_runs[-1]),
            ],
            fmt="{:.2f}",
            columns=("embedq", "same backend"),
        )
        print(f"direct {backend} / direct torch fp32 texts/s: {direct_s / same_s:.3f}")
    print(f"first submit: encoded {first.get('encoded')}, cached {first.get('cached')}")
    print(f"resubmit:     encoded {second.get('encoded')}, cached {second.get('cached')}")
    print(f"resubmit speed-up {speedup:.1f}x; max |resubmit - first| {diff_again}")
    print(f"max |service - direct torch| {diff:.2e}; min cosine to the torch vectors {cosine:.4f}")
    if diff_same is not None:
        print(f"max |service - direct {backend}| {diff_same:.2e}")
    if exact:
        verdict(f"service/direct texts/s >= 0.9 (got {ratio:.3f})", ratio >= 0.9)
    else:
        verdict(f"service/direct torch fp32 texts/s >= 2.2 (got {ratio:.3f})", ratio >= 2.2)
        if ratio_same is not None:
            verdict(f"service/direct {backend} texts/s >= 0.9 (got {ratio_same:.3f})", ratio_same >= 0.9)
    verdict(f"resubmit >= 20x faster than the first submit (got {speedup:.1f}x)", speedup >= 20)
    if exact:
        verdict(f"vectors equal to the direct ones (max abs diff {diff:.2e} <= 1e-5)", diff <= 1e-5)
    else:
        verdict(f"cosine to the torch vectors >= 0.98 (min {cosine:.4f})", cosine >= 0.98)
    write_record(
        "encode" if args.backend == "torch" else f"encode-{args.backend}",
        args,
        {
            "backend": backend,
            "threads": threads,
            "direct_s": direct_runs,
            "direct_same_s": same_runs,
            "service_s": service_runs,
            "worker_s": worker_s,
            "resubmit_s": resubmit_s,
            "direct_texts_per_s": args.n / direct_s,
            "direct_same_texts_per_s": args.n / same_s if same_s else None,
            "service_texts_per_s": args.n / service_s,
            "service_over_direct": ratio,
            "service_over_direct_same": ratio_same,
            "resubmit_speedup": speedup,
            "max_abs_diff": diff,
            "max_abs_diff_same": diff_same,
            "min_cosine": cosine,
            "first": first,
            "resubmit": second,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
