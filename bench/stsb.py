"""Accuracy: STS Benchmark (English) through the service against the library, and each backend beside torch.

Service: one encode job of every unique sentence of the split (normalize=True, backend torch), the
cosine of each pair, Spearman correlation with the gold scores (scipy.stats.spearmanr); the same with
the direct in-process SentenceTransformer.encode(normalize_embeddings=True) in the same run.
Target: |service - direct| <= 0.001 (published all-MiniLM-L6-v2 test figure about 0.82).

With --backends (e.g. openvino,openvino-bf16,onnx,onnx-int8; request or row names) the service's
backends are gated first and one promoted (as ``embedq up`` does), and one more job (backend auto)
gives the promoted backend's Spearman through the service. Then, with the service stopped, each backend
is exported from the bundled model into a temporary artifact root as a worker builds it and loaded in
this process on the worker's threads, and for torch fp32 and each of them the table gives, all direct:
the split's Spearman and its delta to torch's; the quality gate's figures (tasks.gate, on the data
it ships): batch invariance (max |d| per component of the probes' vectors alone vs inside mixed
batches; allowed: the precision's tolerance, fp32 1e-5, bf16 5e-3, int8 0), the pairs at cosine >= 0.8
among the 2,000 paraphrase texts (recall and precision against torch's), the top-10 overlap with torch's
of 1,000 queries over 20,000 documents, and the gate's verdict; bulk texts/s (the documents at batch 64)
and one text's median ms. The gate's sizes: --gate-* (default EMBEDQ_GATE_*, else the whole shipped data).
"""

from __future__ import annotations

import os
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from _stack import (
    direct_model,
    exported_backend,
    load_sts,
    parser,
    service,
    table,
    verdict,
    worker_threads,
    write_record,
)
from scipy.stats import spearmanr

from embedq.cores import backends as core
from embedq.cores import gate


def spearman(vectors: np.ndarray, index: dict[str, int], s1: list[str], s2: list[str], gold: np.ndarray) -> float:
    a = vectors[[index[s] for s in s1]]
    b = vectors[[index[s] for s in s2]]
    return float(spearmanr(np.sum(a * b, axis=1), gold).statistic)


def row_names(asked: str) -> tuple[list[str], dict[str, str]]:
    """``(row backends, {asked name: why it is skipped})`` for the comma-separated ``--backends``."""
    rows: list[str] = []
    skipped: dict[str, str] = {}
    for name in (name.strip() for name in asked.split(",")):
        if not name or name == "torch":
            continue
        try:
            row = core.variant(name, core.isa(), core.bf16_isa())
        except core.BackendUnavailable as exc:
            skipped[name] = str(exc)
            continue
        reason = core.unavailable(row)
        if reason is not None:
            skipped[name] = reason
        elif row not in rows:
            rows.append(row)
    return rows, skipped


def gate_data(args: Any) -> gate.GateData:
    return gate.shipped().sample(
        pairs=args.gate_pairs,
        paraphrases=args.gate_paraphrase_texts,
        documents=args.gate_documents,
        queries=args.gate_queries,
    )


def direct_figures(
    model: Any, unique: list[str], sts: tuple[dict[str, int], list[str], list[str], np.ndarray], data: gate.GateData
) -> tuple[float, gate.Measured]:
    """``(Spearman on the split, the gate's measurement)`` of one loaded model."""

    def encoder(texts: list[str], batch_size: int) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size)

    vectors = model.encode(unique, batch_size=32, normalize_embeddings=True)
    return spearman(vectors, *sts), gate.measure(encoder, data)


BACKEND_COLUMNS = (
    ("backend", "the row backend"),
    ("Spearman", "on the STSb split asked (--split)"),
    ("d torch", "its delta to torch fp32's"),
    ("dev d", "the gate's STS dev Spearman delta (allowed 0.005)"),
    ("invariance", "max |d| alone vs in batches (allowed)"),
    ("para R", "paraphrase pairs at cosine >= 0.8: recall against torch's"),
    ("para P", "and precision"),
    ("top-10", "top-10 overlap with torch's"),
    ("texts/s", "bulk, documents at batch 64"),
    ("1 text ms", "one text's median"),
    ("gate", "the gate's verdict"),
)


def backend_cells(name: str, row: dict[str, Any]) -> list[str]:
    g = row["gate"]
    inv = g["invariance"]
    verdict_text = "reference" if name == "torch" else "passed" if g["passed"] else f"FAILED: {', '.join(g['failed'])}"
    return [
        name,
        f"{row['spearman']:.4f}",
        f"{row['delta']:+.5f}",
        f"{g['sts']['delta']:+.5f}",
        f"{inv['max_abs']:.2g} (<= {inv['tolerance']:g})",
        f"{g['paraphrases']['recall']:.3f}",
        f"{g['paraphrases']['precision']:.3f}",
        f"{g['search']['overlap']:.3f}",
        f"{g['speed']['texts_per_second']:.0f}",
        f"{g['speed']['one_text_ms']:.1f}",
        verdict_text,
    ]


def backend_table(rows: dict[str, dict[str, Any]]) -> None:
    """One line per backend: the columns of ``BACKEND_COLUMNS``, explained below the table."""
    lines = [[head for head, _ in BACKEND_COLUMNS], *(backend_cells(name, row) for name, row in rows.items())]
    widths = [max(len(line[i]) for line in lines) for i in range(len(BACKEND_COLUMNS))]
    last = len(widths) - 1

    def show(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return " | ".join(cell.ljust(w) if i in (0, last) else cell.rjust(w) for i, (cell, w) in pairs).rstrip()

    print(show(lines[0]))
    print("-+-".join("-" * w for w in widths))
    for line in lines[1:]:
        print(show(line))
    print(textwrap.fill("; ".join(f"{head}: {what}" for head, what in BACKEND_COLUMNS[1:]), width=120))


def backends_direct(
    rows: list[str], unique: list[str], sts: tuple[dict[str, int], list[str], list[str], np.ndarray], args: Any
) -> dict[str, dict[str, Any]]:
    """The figures of torch fp32 and each backend in ``rows``, all measured in this process."""
    data, threads = gate_data(args), worker_threads()
    sizes = data.sizes()
    print(
        f"\ndirect, {threads} threads; gate data: {sizes['pairs']:,} STS dev pairs, {sizes['paraphrase_texts']:,} "
        f"paraphrase texts, {sizes['documents']:,} documents, {sizes['queries']:,} queries, {sizes['probes']} probes"
    )
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="embedq-bench-stsb-") as root:
        reference: gate.Measured | None = None
        torch_rho = 0.0
        for row in ["torch", *rows]:
            t0 = time.perf_counter()
            model = exported_backend(row, Path(root), threads)
            built_s = time.perf_counter() - t0
            rho, measured = direct_figures(model, unique, sts, data)
            del model
            if reference is None:
                reference, torch_rho = measured, rho
            criteria = gate.Criteria(invariance=core.INVARIANCE[core.precision(row)])
            judged = gate.judge(reference, measured, data, criteria).record(backend=row, precision=core.precision(row))
            figures[row] = {"spearman": rho, "delta": rho - torch_rho, "gate": judged, "load_s": built_s}
            print(f"{row}: built and loaded in {built_s:.1f}s, measured in {time.perf_counter() - t0:.1f}s", flush=True)
    return figures


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--split", choices=("train", "dev", "test"), default="test", help="STSb split (default test)")
    p.add_argument(
        "--backends",
        default="",
        help="also these backends, comma-separated (e.g. openvino,openvino-bf16,onnx,onnx-int8)",
    )
    for part, env in (
        ("pairs", "PAIRS"),
        ("paraphrase-texts", "PARAPHRASE_TEXTS"),
        ("documents", "DOCUMENTS"),
        ("queries", "QUERIES"),
    ):
        default = int(os.environ.get(f"EMBEDQ_GATE_{env}", "0"))
        p.add_argument(f"--gate-{part}", type=int, default=default, help=f"gate {part} (default {default}: 0 is all)")
    args = p.parse_args()
    gold, s1, s2 = load_sts(args.split)
    unique = list(dict.fromkeys(s1 + s2))
    index = {s: i for i, s in enumerate(unique)}
    rows, skipped = row_names(args.backends)
    promoted, promoted_rho = None, None
    with service(clean=not args.no_clean, backend="auto" if rows else None) as eq:
        model = direct_model()
        model.encode(unique[:64])  # warm-up
        t0 = time.perf_counter()
        direct = model.encode(unique, batch_size=32, normalize_embeddings=True)
        direct_s = time.perf_counter() - t0
        del model
        t0 = time.perf_counter()
        ours = eq.encode(unique, normalize=True, backend="torch").result(timeout=1800)
        service_s = time.perf_counter() - t0
        if rows:
            job = eq.encode(unique, normalize=True, backend="auto")
            promoted_rho = spearman(job.result(timeout=1800), index, s1, s2, gold)
            promoted = (job.info().result or {}).get("backend")

    ours_rho, direct_rho = spearman(ours, index, s1, s2, gold), spearman(direct, index, s1, s2, gold)
    diff = abs(ours_rho - direct_rho)
    print(f"\nSTSb {args.split}: {len(gold)} pairs, {len(unique)} unique sentences")
    table([("Spearman (cosine)", ours_rho, direct_rho), ("encode wall s", service_s, direct_s)], fmt="{:.4f}")
    print(f"|service - direct| = {diff:.2e}; max abs vector diff {float(np.abs(ours - direct).max()):.2e}")
    verdict(f"|service - direct| <= 0.001 (got {diff:.2e})", diff <= 0.001)
    figures = backends_direct(rows, unique, (index, s1, s2, gold), args) if rows else {}
    if figures:
        print(f"\nSTSb {args.split} Spearman and the quality gate's figures, direct, each backend beside torch fp32")
        backend_table(figures)
    for name, why in skipped.items():
        print(f"{name}: skipped: {why}")
    if promoted is not None:
        line = f"service, backend auto: served by {promoted}, Spearman {promoted_rho:.4f}"
        if promoted in figures:
            line += f" (direct {figures[promoted]['spearman']:.4f})"
        print(line)
    write_record(
        f"stsb-{args.split}",
        args,
        {
            "spearman": ours_rho,
            "direct_spearman": direct_rho,
            "abs_diff": diff,
            "pairs": len(gold),
            "backends": figures,
            "skipped": skipped,
            "service_auto": {"backend": promoted, "spearman": promoted_rho} if promoted else None,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
