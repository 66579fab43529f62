"""Scoring commands, with the light client: ``similarity`` and ``paraphrases``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api_client.errors import BadRequest
from api_client.kinds.similarity import METRICS
from api_client.schemas import DEFAULT_MODEL
from embedq.worker.cli.common import UsageError, client, refuse_terminal, write_npy
from embedq.worker.cli.jobs import add_wait_options, await_job, by_line, read_texts

ORDER = 30
"""Where these commands come in ``embedq --help``."""


def cmd_similarity(args: argparse.Namespace) -> int:
    if args.queries in (None, "-") and args.texts in (None, "-"):
        raise UsageError("QUERIES and TEXTS cannot both be stdin; give at least one as a file")
    if not args.no_wait:
        refuse_terminal(args.output)
    queries, texts = read_texts(args.queries), read_texts(args.texts)
    with client() as eq:
        try:
            job = eq.similarity(
                queries,
                texts,
                model=args.model,
                metric=args.metric,
                pairwise=args.pairwise,
                batch_size=args.batch_size,
            )
        except BadRequest as exc:
            raise by_line(exc, {"queries": args.queries or "stdin", "texts": args.texts or "stdin"}) from exc
        if not await_job(job, args):
            return 0
        scores = job.result(timeout=0)
    write_npy(scores, args.output)
    return 0


def cmd_paraphrases(args: argparse.Namespace) -> int:
    texts = read_texts(args.file)
    with client() as eq:
        try:
            job = eq.paraphrases(
                texts,
                threshold=args.threshold,
                top_k=args.top_k,
                max_pairs=args.max_pairs,
                model=args.model,
                metric=args.metric,
                batch_size=args.batch_size,
            )
        except BadRequest as exc:
            raise by_line(exc) from exc
        if not await_job(job, args):
            return 0
        pairs = job.result(timeout=0)
    write_pairs(pairs, texts, as_json=args.json)
    return 0


def write_pairs(pairs: list[tuple[float, int, int]], texts: list[str], *, as_json: bool) -> None:
    """One pair a line, best first: ``score<TAB>line<TAB>line<TAB>text<TAB>text`` (lines from 1), or JSON."""
    if as_json:
        print(json.dumps([[score, i, j] for score, i, j in pairs]))
        return
    for score, i, j in pairs:
        sys.stdout.write(f"{score:.4f}\t{i + 1}\t{j + 1}\t{_one_line(texts[i])}\t{_one_line(texts[j])}\n")


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    p.add_argument(
        "--metric", choices=METRICS, default="cosine", help="similarity function, as the library's (default cosine)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")


def register(sub: Any) -> None:
    """Add ``similarity`` and ``paraphrases`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "similarity",
        help="score queries against texts into a .npy matrix",
        description="Read queries and texts, one per line, run a similarity job and write the scores as a "
        ".npy array to stdout (or --output): float32 [queries, texts], as SentenceTransformer.similarity, or "
        "[n] pair by pair with --pairwise. Texts already encoded by the model cost no forward pass.",
    )
    p.add_argument("queries", metavar="QUERIES", help="file of queries, one per line ('-' for stdin)")
    p.add_argument("texts", metavar="TEXTS", help="file of texts, one per line ('-' for stdin)")
    p.add_argument("--pairwise", action="store_true", help="score line k of QUERIES with line k of TEXTS only")
    _model_options(p)
    p.add_argument("--output", help="write the .npy here instead of stdout")
    add_wait_options(p)
    p.set_defaults(func=cmd_similarity)

    p = sub.add_parser(
        "paraphrases",
        help="find the most similar pairs of lines in a file",
        description="Read texts, one per line, run a paraphrase-mining job (as sentence_transformers.util."
        "paraphrase_mining) and print the pairs best first, one a line: score, the two line numbers (from 1) "
        "and the two texts, tab-separated; --json prints [[score, i, j], ...] with indexes from 0.",
    )
    p.add_argument("file", metavar="FILE", help="file of texts, one per line ('-' for stdin)")
    p.add_argument("--threshold", type=float, default=None, help="only pairs scoring at least this")
    p.add_argument("--top-k", type=int, default=100, help="candidates kept per text (default 100)")
    p.add_argument("--max-pairs", type=int, default=500_000, help="most pairs mined (default 500000)")
    _model_options(p)
    p.add_argument("--json", action="store_true", help="print [[score, i, j], ...] instead of lines")
    add_wait_options(p)
    p.set_defaults(func=cmd_paraphrases)
