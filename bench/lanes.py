"""Interactive latency while a batch job runs: single-text encode jobs on an idle worker, then beside a bulk job.

One ``embedq worker`` with its default layout (an interactive consumer of its own, Celery's solo pool
on one thread, beside the niced batch consumer; threads and nice as the worker sets them:
EMBEDQ_TORCH_THREADS is left unset). Measured in one run: p50/p99 submit -> result of ``--jobs``
sequential single-text encode jobs (new texts: cache misses) with the worker idle, then again while a
``--batch`` text encode job (chunked, batch lane) runs; the bulk job's texts/s while it shared the
machine; the direct single-text call in this process on the interactive consumer's threads (torch fp32,
and with --backend other than torch the backend the service serves, from the files its gate judged).
With --backend auto (or a backend) the model's backends are gated first and one promoted fleet-wide.
Target: busy p50 within 2x of idle p50.
"""

from __future__ import annotations

import time

from _stack import direct_backend, direct_model, load_texts, parser, percentiles, service, table, verdict, write_record

from embedq.worker.layout import INTERACTIVE_THREADS


def singles(eq, texts: list[str], backend: str | None) -> list[float]:
    seconds = []
    for text in texts:
        t0 = time.perf_counter()
        eq.encode([text], backend=backend).result(timeout=120)
        seconds.append(time.perf_counter() - t0)
    return seconds


def one_text_calls(model, texts: list[str], warmup: int = 20) -> list[float]:
    """Seconds of ``model.encode([text])`` for each text, after ``warmup`` unmeasured calls."""
    seconds = []
    for text in texts[:warmup] + texts:
        t0 = time.perf_counter()
        model.encode([text])
        seconds.append(time.perf_counter() - t0)
    return seconds[len(texts[:warmup]) :]


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=100, help="single-text jobs per phase (default 100)")
    p.add_argument("--batch", type=int, default=100_000, help="texts in the bulk job (default 100000)")
    p.add_argument("--backend", default="torch", help="the worker's EMBEDQ_BACKEND (default torch; others: gate first)")
    args = p.parse_args()
    bulk = load_texts(args.batch)
    idle_texts = load_texts(args.jobs, offset=args.batch)
    busy_texts = load_texts(args.jobs, offset=args.batch + args.jobs)
    same: list[float] = []
    with service(clean=not args.no_clean, backend=args.backend, default_threads=True) as eq:
        probe = eq.encode(["embedq lanes bench: which backend serves this one?"])
        probe.result(timeout=120)
        served = (probe.info().result or {}).get("backend", "torch")
        direct = one_text_calls(direct_model(threads=INTERACTIVE_THREADS), idle_texts)
        if served != "torch":
            same = one_text_calls(direct_backend(eq, served, threads=INTERACTIVE_THREADS), idle_texts)
        singles(eq, [f"warm-up {t}" for t in idle_texts[:10]], None)
        idle = singles(eq, idle_texts, None)

        job = eq.encode(bulk)
        while job.progress[0] < 2_000:
            time.sleep(0.2)
        start_done, t0 = job.progress[0], time.perf_counter()
        busy = singles(eq, busy_texts, None)
        bulk_rate = (job.progress[0] - start_done) / (time.perf_counter() - t0)
        still_running = not job.status.terminal
        job.cancel()

    i, b, d = percentiles(idle), percentiles(busy), percentiles(direct)
    s = percentiles(same) if same else d  # the direct call of the backend the service ran
    print(f"\n{args.jobs} single-text jobs per phase; bulk job of {args.batch} texts on the batch lane")
    print(f"served by backend {served}; direct calls on {INTERACTIVE_THREADS} thread(s), as the interactive consumer")
    table(
        [
            ("p50 idle (ms)", i["p50_ms"], s["p50_ms"]),
            ("p99 idle (ms)", i["p99_ms"], s["p99_ms"]),
            ("p50 beside the bulk job (ms)", b["p50_ms"], s["p50_ms"]),
            ("p99 beside the bulk job (ms)", b["p99_ms"], s["p99_ms"]),
        ],
        columns=("embedq", "same backend" if same else "torch fp32"),
    )
    if same:
        print(f"direct one text p50: {served} {s['p50_ms']:.1f} ms, torch fp32 {d['p50_ms']:.1f} ms")
    print(f"bulk job meanwhile: {bulk_rate:.0f} texts/s (still running at the end: {still_running})")
    ratio = b["p50_ms"] / i["p50_ms"]
    verdict(f"busy p50 within 2x of idle (got {ratio:.2f}x)", ratio <= 2 and still_running)
    write_record(
        "lanes" if args.backend == "torch" else f"lanes-{args.backend}",
        args,
        {
            "backend": served,
            "idle": i,
            "busy": b,
            "direct": d,
            "direct_same": s if same else None,
            "busy_over_idle_p50": ratio,
            "bulk_texts_per_s": bulk_rate,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
