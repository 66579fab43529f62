"""Chunk size sweep: one bulk encode job of N texts on two worker processes, per client chunk_size.

A job of more than chunk_size texts runs as ceil(N / chunk_size) chunk jobs that any worker process
takes. Small chunks spread a job over every process but pay a claim, a transaction and a message
each; large ones leave a process idle at the end (or, at chunk_size >= N, all but one). For each
size of --chunk-sizes (N itself means one unchunked job): empty cache, submit, numpy array in hand;
texts/s, the chunk count and the texts each worker process encoded. Fleet: --workers `embedq
worker` processes, the cores shared out as torch threads (EMBEDQ_TORCH_THREADS overrides). Beside
them, the direct SentenceTransformer.encode of the same texts in this process on all cores, measured
first, before the servers start. The default chunk_size (1000) should be within 5% of the best.
"""

from __future__ import annotations

import time

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

DEFAULT_CHUNK_SIZE = 1000
NEAR_BEST = 0.95


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=20_000, help="texts in the job (default 20000)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=2, help="worker processes, concurrency 1 each (default 2)")
    p.add_argument(
        "--chunk-sizes",
        type=lambda v: [int(x) for x in v.split(",")],
        default="250,500,1000,2000,5000",
        help="client chunk_size values, comma-separated; N is always added (default 250,500,1000,2000,5000)",
    )
    args = p.parse_args()
    sizes = sorted({*args.chunk_sizes, args.n})
    texts, warmup = load_texts(args.n), load_texts(256, offset=args.n)

    model = direct_model(worker_threads(1))
    model.encode(warmup, batch_size=args.batch_size)
    t0 = time.perf_counter()
    model.encode(texts, batch_size=args.batch_size)
    direct_s = time.perf_counter() - t0
    print(f"direct: {direct_s:.2f}s, {worker_threads(1)} torch threads", flush=True)

    runs = []
    with service(clean=not args.no_clean, workers=args.workers) as base:
        base.encode(warmup, batch_size=args.batch_size).result(timeout=600)
        for size in sizes:
            with EmbedQ(base.settings.model_copy(update={"chunk_size": size})) as eq:
                if not args.no_clean:
                    clear_cache(str(eq.settings.database_url))
                seconds, submit_s, _, job = timed_encode(eq, texts, args.batch_size)
                share = spread(eq, job.id)
                runs.append(
                    {
                        "chunk_size": size,
                        "chunks": job.info().chunks,
                        "seconds": seconds,
                        "submit_s": submit_s,
                        "texts_per_s": args.n / seconds,
                        "spread": share,
                    }
                )
            print(
                f"chunk size {size}: {seconds:.2f}s (submit {submit_s:.2f}s), texts per process {list(share.values())}",
                flush=True,
            )

    threads = worker_threads(args.workers)
    print(f"\n{args.n} texts, {args.workers} workers x {threads} torch threads, batch size {args.batch_size}; texts/s")
    rate = args.n / direct_s
    table([(f"chunk size {r['chunk_size']} ({r['chunks'] or 'no'} chunks)", r["texts_per_s"], rate) for r in runs])
    best = max(runs, key=lambda r: r["texts_per_s"])
    default = next((r for r in runs if r["chunk_size"] == DEFAULT_CHUNK_SIZE), None)
    print(f"best: chunk size {best['chunk_size']}")
    if default is not None:
        share = default["texts_per_s"] / best["texts_per_s"]
        verdict(f"chunk size {DEFAULT_CHUNK_SIZE} within 5% of the best (got {share:.3f})", share >= NEAR_BEST)
    write_record(
        "chunks",
        args,
        {"direct_s": direct_s, "direct_texts_per_s": args.n / direct_s, "threads": threads, "runs": runs},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
