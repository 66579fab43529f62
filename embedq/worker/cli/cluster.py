"""``embedq cluster``, with the light client: group the lines of a file into clusters (emerging topics)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api_client.errors import BadRequest
from api_client.schemas import DEFAULT_MODEL
from embedq.worker.cli.jobs import add_wait_options, await_job, by_line, read_texts

ORDER = 35
"""Where ``cluster`` comes in ``embedq --help``: after the scoring commands."""


def cmd_cluster(args: argparse.Namespace) -> int:
    from embedq.worker.cli.common import client

    texts = read_texts(args.file)
    with client() as eq:
        try:
            job = eq.cluster(
                texts, model=args.model, threshold=args.threshold, min_size=args.min_size, batch_size=args.batch_size
            )
        except BadRequest as exc:
            raise by_line(exc) from exc
        if not await_job(job, args):
            return 0
        clusters = job.result(timeout=0)
    write_clusters(clusters, texts, as_json=args.json)
    return 0


def write_clusters(clusters: list[list[int]], texts: list[str], *, as_json: bool) -> None:
    """Each cluster, largest first: a ``# cluster N: S texts`` line, then ``line<TAB>text`` per member (lines from 1,
    its central text first); or, with ``as_json``, ``[[i, ...], ...]`` with indexes from 0."""
    if as_json:
        print(json.dumps(clusters))
        return
    if not clusters:
        print("# no cluster: no text has enough close neighbours (lower --threshold or --min-size)", file=sys.stderr)
    for number, cluster in enumerate(clusters, start=1):
        sys.stdout.write(f"# cluster {number}: {len(cluster)} text{'' if len(cluster) == 1 else 's'}\n")
        for i in cluster:
            sys.stdout.write(f"{i + 1}\t{texts[i].replace(chr(9), ' ').replace(chr(13), ' ')}\n")


def register(sub: Any) -> None:
    """Add ``cluster`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "cluster",
        help="group the lines of a file into clusters of similar texts",
        description="Read texts, one per line, run a cluster job (sentence_transformers.util.community_detection "
        "on their vectors) and print the clusters largest first: a '# cluster N: S texts' line, then the line "
        "number (from 1) and text of each member, its central text first. Texts in no cluster of at least "
        "--min-size are left out. --json prints [[i, ...], ...] with indexes from 0.",
    )
    p.add_argument("file", metavar="FILE", help="file of texts, one per line ('-' for stdin)")
    p.add_argument("--threshold", type=float, default=0.75, help="cosine similarity within a cluster (default 0.75)")
    p.add_argument("--min-size", type=int, default=10, help="smallest cluster reported (default 10)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="print [[i, ...], ...] instead of lines")
    add_wait_options(p)
    p.set_defaults(func=cmd_cluster)
