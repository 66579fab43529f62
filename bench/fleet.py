"""Chunked bulk encode on one worker process against two: does the second process help, or at least not hurt?

One encode job of N distinct corpus texts (more than chunk_size, so it runs as chunk jobs that any
worker process takes), submit to numpy array in hand, on each fleet of --fleets (WORKERSxCONCURRENCY):
  1x1  one `embedq worker` process, torch threads = all cores            (the single-worker baseline)
  2x1  two `embedq worker` processes (distinct names), 1 thread each      (what "add a worker" means)
  1x2  one `embedq worker --concurrency 2`, 1 thread per pool process    (the same cores, one node)
Threads per process are the cores shared out (EMBEDQ_TORCH_THREADS overrides), so no fleet asks for
more threads than there are cores. Beside them, the direct figure: SentenceTransformer.encode in this
process, all cores, measured first, before any server or worker runs. Each fleet gets fresh servers
and an empty cache; the texts each worker process encoded are printed (the chunks' spread).
Target: the 2-process fleets' texts/s >= 0.95 x the 1x1 fleet's (the second process does not slow
the job down; 5% is the run-to-run noise seen on this machine).
"""

from __future__ import annotations

import time

import numpy as np
from _stack import (
    clear_cache,
    direct_model,
    load_texts,
    parser,
    service,
    spread,
    table,
    timed_encode,
    verdict,
    worker_threads,
    write_record,
)

from api_client import EmbedQ

NOT_SLOWER = 0.95


def fleets(value: str) -> list[tuple[int, int]]:
    """``"1x1,2x1"`` → ``[(1, 1), (2, 1)]`` (workers, concurrency)."""
    out = []
    for item in value.split(","):
        workers, _, concurrency = item.strip().partition("x")
        out.append((int(workers), int(concurrency or 1)))
    return out


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=100_000, help="texts in the job (default 100000)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--chunk-size", type=int, default=1000, help="the client's chunk_size (default 1000)")
    p.add_argument(
        "--fleets", type=fleets, default="1x1,2x1,1x2", help="WORKERSxCONCURRENCY list (default 1x1,2x1,1x2)"
    )
    args = p.parse_args()
    texts, warmup = load_texts(args.n), load_texts(256, offset=args.n)

    model = direct_model(worker_threads(1))
    model.encode(warmup, batch_size=args.batch_size)
    t0 = time.perf_counter()
    direct = model.encode(texts, batch_size=args.batch_size)
    direct_s = time.perf_counter() - t0
    print(f"direct: {direct_s:.2f}s, {worker_threads(1)} torch threads", flush=True)

    runs = []
    for workers, concurrency in args.fleets:
        with (
            service(clean=not args.no_clean, workers=workers, concurrency=concurrency) as base,
            EmbedQ(base.settings.model_copy(update={"chunk_size": args.chunk_size})) as eq,
        ):
            eq.encode(warmup, batch_size=args.batch_size).result(timeout=600)
            if not args.no_clean:
                clear_cache(str(eq.settings.database_url))
            seconds, submit_s, ours, job = timed_encode(eq, texts, args.batch_size)
            info = job.info()
            runs.append(
                {
                    "fleet": f"{workers}x{concurrency}",
                    "workers": workers,
                    "concurrency": concurrency,
                    "threads": worker_threads(workers * concurrency),
                    "chunk_size": eq.settings.chunk_size,
                    "chunks": info.chunks,
                    "seconds": seconds,
                    "submit_s": submit_s,
                    "texts_per_s": args.n / seconds,
                    "max_abs_diff": float(np.abs(ours - direct).max()),
                    "spread": spread(eq, job.id),
                }
            )
        print(f"fleet {runs[-1]['fleet']}: {seconds:.2f}s, texts per process {list(runs[-1]['spread'].values())}")

    print(f"\n{args.n} texts, batch size {args.batch_size}, chunk size {runs[0]['chunk_size']}; texts/s")
    rows = [
        (f"{r['workers']} x worker --concurrency {r['concurrency']}, {r['threads']} thr each", r["texts_per_s"])
        for r in runs
    ]
    table([(label, ours, args.n / direct_s) for label, ours in rows])
    for r in runs:
        print(
            f"fleet {r['fleet']}: {r['chunks']} chunks, submit (eq.encode() returns) {r['submit_s']:.2f}s, "
            f"max |service - direct| {r['max_abs_diff']:.2e}"
        )
    base = next((r for r in runs if r["workers"] * r["concurrency"] == 1), None)
    for r in runs:
        if base is not None and r is not base:
            gain = r["texts_per_s"] / base["texts_per_s"]
            verdict(
                f"fleet {r['fleet']} texts/s >= {NOT_SLOWER} x fleet {base['fleet']} (got {gain:.3f})",
                gain >= NOT_SLOWER,
            )
    write_record(
        "fleet",
        args,
        {
            "direct_s": direct_s,
            "direct_texts_per_s": args.n / direct_s,
            "direct_threads": worker_threads(1),
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
