"""Interactive latency while a batch job runs: single-text encode jobs on an idle worker, then beside a bulk job.

One ``embedq worker`` with its default layout (an interactive consumer of its own beside the batch
consumer, threads and nice as the worker sets them: EMBEDQ_TORCH_THREADS is left unset). Measured in
one run: p50/p99 submit -> result of ``--jobs`` sequential single-text encode jobs (new texts: cache
misses) with the worker idle, then again while a ``--batch`` text encode job (chunked, batch lane)
runs; the bulk job's texts/s while it shared the machine; the direct single-text call in this process.
Target: busy p50 within 2x of idle p50.
"""

from __future__ import annotations

import time

from _stack import direct_model, load_texts, parser, percentiles, service, table, verdict, write_record


def singles(eq, texts: list[str], backend: str | None) -> list[float]:
    seconds = []
    for text in texts:
        t0 = time.perf_counter()
        eq.encode([text], backend=backend).result(timeout=120)
        seconds.append(time.perf_counter() - t0)
    return seconds


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=100, help="single-text jobs per phase (default 100)")
    p.add_argument("--batch", type=int, default=100_000, help="texts in the bulk job (default 100000)")
    p.add_argument("--backend", default="torch", help="the worker's EMBEDQ_BACKEND (default torch)")
    args = p.parse_args()
    bulk = load_texts(args.batch)
    idle_texts = load_texts(args.jobs, offset=args.batch)
    busy_texts = load_texts(args.jobs, offset=args.batch + args.jobs)
    with service(clean=not args.no_clean, backend=args.backend, default_threads=True) as eq:
        model = direct_model(threads=1)
        direct = []
        for text in idle_texts[:20] + idle_texts:
            t0 = time.perf_counter()
            model.encode([text])
            direct.append(time.perf_counter() - t0)
        direct = direct[20:]
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
    print(f"\n{args.jobs} single-text jobs per phase; bulk job of {args.batch} texts on the batch lane")
    table(
        [
            ("p50 idle (ms)", i["p50_ms"], d["p50_ms"]),
            ("p99 idle (ms)", i["p99_ms"], d["p99_ms"]),
            ("p50 beside the bulk job (ms)", b["p50_ms"], d["p50_ms"]),
            ("p99 beside the bulk job (ms)", b["p99_ms"], d["p99_ms"]),
        ]
    )
    print(f"bulk job meanwhile: {bulk_rate:.0f} texts/s (still running at the end: {still_running})")
    ratio = b["p50_ms"] / i["p50_ms"]
    verdict(f"busy p50 within 2x of idle (got {ratio:.2f}x)", ratio <= 2 and still_running)
    write_record(
        "lanes", args, {"idle": i, "busy": b, "direct": d, "busy_over_idle_p50": ratio, "bulk_texts_per_s": bulk_rate}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
