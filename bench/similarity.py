"""Similarity and paraphrase jobs against the library called directly, cold and warm.

Measures, in one run, submit to result in hand in the client:
  similarity   eq.similarity(queries, texts) of --queries x --texts distinct corpus texts (default
               1000 x 1000), against model.encode(queries) + model.encode(texts) + model.similarity
  paraphrases  eq.paraphrases(texts) of --paraphrase-texts texts (default 10000), against
               util.paraphrase_mining(model, texts) (both: top_k 100, max_pairs 500000)
each cold (cache emptied first: every text is encoded) and warm (the same job again: every text is
a cache hit, no forward pass). The direct side has no cache, so it is the same figure for both; the
library's compute alone on embeddings already in hand is printed as the floor a warm job approaches.
Direct calls run in this process with the worker's torch thread count (EMBEDQ_TORCH_THREADS, default
all cores), while the worker is idle.
Targets: warm jobs faster than the direct encode + compute (ratio < 1); scores equal to the direct
ones (max abs diff <= 1e-5); the same pairs as the library (pairs on one side only must tie, within
1e-5, with the lowest score kept, where max_pairs cuts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _stack import clear_cache, direct_model, load_texts, parser, service, table, verdict, worker_threads, write_record

TOLERANCE = 1e-5


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = call()
    return time.perf_counter() - t0, out


def compare_pairs(ours: list[tuple[float, int, int]], ref: list[tuple[float, int, int]]) -> dict[str, Any]:
    """How two ``(score, i, j)`` lists agree: counts, pairs on one side only, score differences."""
    a = {(i, j): s for s, i, j in ours}
    b = {(i, j): s for s, i, j in ref}
    common = a.keys() & b.keys()
    one_side = {k: a.get(k, b.get(k)) for k in a.keys() ^ b.keys()}
    cut = max(min(a.values(), default=-1.0), min(b.values(), default=-1.0))
    untied = [k for k, score in one_side.items() if score is not None and score > cut + TOLERANCE]
    return {
        "ours": len(ours),
        "direct": len(ref),
        "common": len(common),
        "one_side": len(one_side),
        "one_side_not_tied": len(untied),
        "identical_list": [tuple(pair) for pair in ours] == [tuple(pair) for pair in ref],  # the library gives lists
        "max_score_diff": max((abs(a[k] - b[k]) for k in common), default=0.0),
    }


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--queries", type=int, default=1000, help="similarity queries (default 1000)")
    p.add_argument("--texts", type=int, default=1000, help="similarity texts (default 1000)")
    p.add_argument("--paraphrase-texts", type=int, default=10_000, help="paraphrase texts (default 10000)")
    p.add_argument("--metric", default="cosine", help="similarity metric on both sides (default cosine)")
    args = p.parse_args()
    from sentence_transformers import SimilarityFunction, util

    queries = load_texts(args.queries)
    texts = load_texts(args.texts, offset=args.queries)
    para = load_texts(args.paraphrase_texts, offset=args.queries + args.texts)
    warmup = load_texts(256, offset=args.queries + args.texts + args.paraphrase_texts)
    clean = not args.no_clean

    with service(clean=clean) as eq:
        database_url = str(eq.settings.database_url)
        model = direct_model()
        model.similarity_fn_name = args.metric
        model.encode(warmup)
        score_function = SimilarityFunction.to_similarity_fn(args.metric)  # cos_sim: the library's default

        def direct_similarity() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            a, b = model.encode(queries), model.encode(texts)
            return a, b, model.similarity(a, b).numpy()

        sim_direct_s, (qa, tb, ref) = timed(direct_similarity)
        sim_compute_s, _ = timed(lambda: model.similarity(qa, tb))
        if clean:
            clear_cache(database_url)
        sim_cold_s, cold = timed(lambda: eq.similarity(queries, texts, metric=args.metric).result(timeout=600))
        sim_warm_s, warm = timed(lambda: eq.similarity(queries, texts, metric=args.metric).result(timeout=600))
        print(f"similarity: direct {sim_direct_s:.2f}s, cold {sim_cold_s:.2f}s, warm {sim_warm_s:.2f}s", flush=True)

        para_direct_s, para_ref = timed(lambda: util.paraphrase_mining(model, para, score_function=score_function))
        embeddings = model.encode(para, convert_to_tensor=True)
        para_compute_s, _ = timed(lambda: util.paraphrase_mining_embeddings(embeddings, score_function=score_function))
        if clean:
            clear_cache(database_url)
        para_cold_s, para_cold = timed(lambda: eq.paraphrases(para, metric=args.metric).result(timeout=1200))
        para_warm_s, para_warm = timed(lambda: eq.paraphrases(para, metric=args.metric).result(timeout=1200))
        print(f"paraphrases: direct {para_direct_s:.2f}s, cold {para_cold_s:.2f}s, warm {para_warm_s:.2f}s")

    sim_diff = float(max(np.abs(cold - ref).max(), np.abs(warm - ref).max()))
    agree_cold, agree_warm = compare_pairs(para_cold, para_ref), compare_pairs(para_warm, para_ref)
    n_sim, n_para = f"{args.queries} x {args.texts}", args.paraphrase_texts
    print(f"\nseconds, submit to result in hand; metric {args.metric}, {worker_threads()} torch threads on both sides")
    table(
        [
            (f"similarity {n_sim}, cold (encode all)", sim_cold_s, sim_direct_s),
            (f"similarity {n_sim}, warm (all cached)", sim_warm_s, sim_direct_s),
            (f"paraphrases {n_para}, cold (encode all)", para_cold_s, para_direct_s),
            (f"paraphrases {n_para}, warm (all cached)", para_warm_s, para_direct_s),
        ],
        fmt="{:.3f}",
    )
    print(
        f"direct compute alone (embeddings in hand): similarity {sim_compute_s:.3f}s, paraphrases {para_compute_s:.3f}s"
    )
    print(f"similarity: max |service - direct| {sim_diff:.2e}")
    for label, agree in (("cold", agree_cold), ("warm", agree_warm)):
        print(
            f"paraphrases {label}: {agree['ours']} pairs vs {agree['direct']} direct, {agree['common']} common, "
            f"{agree['one_side']} on one side only ({agree['one_side_not_tied']} not tied at the cut), "
            f"max score diff {agree['max_score_diff']:.2e}, identical list: {agree['identical_list']}"
        )
    verdict(
        f"warm similarity faster than direct (ratio {sim_warm_s / sim_direct_s:.3f} < 1)", sim_warm_s < sim_direct_s
    )
    verdict(
        f"warm paraphrases faster than direct (ratio {para_warm_s / para_direct_s:.3f} < 1)",
        para_warm_s < para_direct_s,
    )
    verdict(f"similarity scores equal to direct (max abs diff {sim_diff:.2e} <= {TOLERANCE})", sim_diff <= TOLERANCE)
    same = all(
        a["one_side_not_tied"] == 0 and a["max_score_diff"] <= TOLERANCE and a["ours"] == a["direct"]
        for a in (agree_cold, agree_warm)
    )
    verdict("paraphrase pairs equal to direct, up to ties at the cut", same)
    write_record(
        "similarity",
        args,
        {
            "similarity": {
                "direct_s": sim_direct_s,
                "direct_compute_s": sim_compute_s,
                "cold_s": sim_cold_s,
                "warm_s": sim_warm_s,
                "max_abs_diff": sim_diff,
            },
            "paraphrases": {
                "direct_s": para_direct_s,
                "direct_compute_s": para_compute_s,
                "cold_s": para_cold_s,
                "warm_s": para_warm_s,
                "agreement_cold": agree_cold,
                "agreement_warm": agree_warm,
            },
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
