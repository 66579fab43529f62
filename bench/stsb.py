"""Accuracy: STS Benchmark (English) through the service against the library.

One encode job of every unique sentence of the split (normalize=True), the cosine of each pair,
Spearman correlation with the gold scores (scipy.stats.spearmanr); the same with the direct
in-process SentenceTransformer.encode(normalize_embeddings=True) in the same run.
Target: |service - direct| <= 0.001 (published all-MiniLM-L6-v2 test figure about 0.82).
With --backends, the same split is encoded once more per backend (a request naming it; the ONNX backends
are built and gated on STSb dev first) and each Spearman is printed beside torch fp32's.
"""

from __future__ import annotations

import time

import numpy as np
from _stack import direct_model, load_sts, parser, service, table, verdict, write_record
from scipy.stats import spearmanr


def spearman(vectors: np.ndarray, index: dict[str, int], s1: list[str], s2: list[str], gold: np.ndarray) -> float:
    a = vectors[[index[s] for s in s1]]
    b = vectors[[index[s] for s in s2]]
    return float(spearmanr(np.sum(a * b, axis=1), gold).statistic)


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--split", choices=("train", "dev", "test"), default="test", help="STSb split (default test)")
    p.add_argument("--backends", default="", help="also these backends, comma-separated (e.g. onnx,onnx-int8)")
    args = p.parse_args()
    gold, s1, s2 = load_sts(args.split)
    unique = list(dict.fromkeys(s1 + s2))
    index = {s: i for i, s in enumerate(unique)}
    backends = [name for name in args.backends.split(",") if name]
    per_backend: dict[str, float] = {}
    with service(clean=not args.no_clean, backend="auto" if backends else None) as eq:
        model = direct_model()
        model.encode(unique[:64])  # warm-up
        t0 = time.perf_counter()
        direct = model.encode(unique, batch_size=32, normalize_embeddings=True)
        direct_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = eq.encode(unique, normalize=True, backend="torch").result(timeout=1800)
        service_s = time.perf_counter() - t0
        for name in backends:
            vectors = eq.encode(unique, normalize=True, backend=name).result(timeout=1800)
            per_backend[name] = spearman(vectors, index, s1, s2, gold)

    ours_rho, direct_rho = spearman(ours, index, s1, s2, gold), spearman(direct, index, s1, s2, gold)
    diff = abs(ours_rho - direct_rho)
    print(f"\nSTSb {args.split}: {len(gold)} pairs, {len(unique)} unique sentences")
    table([("Spearman (cosine)", ours_rho, direct_rho), ("encode wall s", service_s, direct_s)], fmt="{:.4f}")
    print(f"|service - direct| = {diff:.2e}; max abs vector diff {float(np.abs(ours - direct).max()):.2e}")
    verdict(f"|service - direct| <= 0.001 (got {diff:.2e})", diff <= 0.001)
    if per_backend:
        table([(f"Spearman, backend {name}", rho, direct_rho) for name, rho in per_backend.items()], fmt="{:.4f}")
    write_record(
        f"stsb-{args.split}",
        args,
        {
            "spearman": ours_rho,
            "direct_spearman": direct_rho,
            "abs_diff": diff,
            "pairs": len(gold),
            "backends": per_backend,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
