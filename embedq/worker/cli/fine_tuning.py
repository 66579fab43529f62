"""``embedq fine-tune``, with the light client: fine-tune an embedding model on pairs and register it.

The pairs file's header says its format: ``anchor,positive`` for the MNRL
loss, ``text1,text2,score`` for CoSENT (the evaluation pairs may be either).
A bad row is bad input (exit 2), named by its line number.
"""

from __future__ import annotations

import argparse
from typing import Any

from api_client.errors import BadRequest
from api_client.kinds.fine_tune import LOSSES
from embedq.worker.cli import classifier_views as views
from embedq.worker.cli.classifier_files import Records, by_record_line, pairs_format, read_pairs
from embedq.worker.cli.collections import _print_json
from embedq.worker.cli.common import UsageError, client
from embedq.worker.cli.jobs import add_wait_options, await_job

ORDER = 60
"""Where these commands come in ``embedq --help``."""

HEADERS = {"mnrl": "anchor,positive", "cosent": "text1,text2,score"}


def matryoshka_dims(text: str | None) -> list[int] | None:
    """``384,256,128`` as ``[384, 256, 128]``."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"--matryoshka-dims {text!r}: expected whole numbers apart by commas (384,256,128)") from exc


def fine_tune_request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Records]]:
    """The keyword arguments of ``EmbedQ.fine_tune`` (after the model) from the command line, and the file
    records each list of pairs was read from."""
    found = pairs_format(args.file)
    if found != args.loss:
        raise UsageError(
            f"{args.file}: --loss {args.loss} reads a header {HEADERS[args.loss]}; this file's header is for "
            f"--loss {found}"
        )
    pairs, records = read_pairs(args.file, args.loss)
    files = {"pairs": records}
    eval_pairs = None
    if args.eval_pairs:
        eval_pairs, files["eval_pairs"] = read_pairs(args.eval_pairs, pairs_format(args.eval_pairs))
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate}
    request = {
        "pairs": pairs,
        "loss": args.loss,
        "eval_pairs": eval_pairs,
        "name": args.name,
        "matryoshka_dims": matryoshka_dims(args.matryoshka_dims),
        "params": {key: value for key, value in given.items() if value is not None},
        "seed": args.seed,
    }
    return request, files


def cmd_fine_tune(args: argparse.Namespace) -> int:
    request, files = fine_tune_request(args)
    with client() as eq:
        try:
            job = eq.fine_tune(args.model, **request)
        except BadRequest as exc:
            raise by_record_line(exc, files) from exc
        if not await_job(job, args):
            return 0
        result = job.result(timeout=0)
    if args.json:
        _print_json(result)
    else:
        print("\n".join(views.fine_tune_lines(result)))
    return 0


def register(sub: Any) -> None:
    """Add ``fine-tune`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "fine-tune",
        help="fine-tune an embedding model on pairs and register it as a new model",
        description="Fine-tune MODEL on the pairs of FILE and register the result as model --name (default "
        "MODEL-tuned), usable at once by encode, similarity, collections and classifiers. FILE is a CSV "
        "(or JSON lines, for a .jsonl file) with a header anchor,positive for --loss mnrl (the other pairs "
        "of a batch are the negatives) or text1,text2,score for --loss cosent. --eval-pairs, in either "
        "format, are scored before and after training. A bad row is reported by its line number. Prints the "
        "new model (name, id, version), its training steps and time, and each evaluation figure before and "
        "after; --json prints the whole result.",
    )
    p.add_argument("model", metavar="MODEL", help="the base model's name")
    p.add_argument("file", metavar="FILE", help="the training pairs: CSV or JSON lines (.jsonl)")
    p.add_argument("--name", help="the new model's name (1 to 63 lower-case letters, digits, '-' or '_')")
    p.add_argument("--loss", choices=LOSSES, default="mnrl", help="training loss (default mnrl)")
    p.add_argument("--eval-pairs", metavar="FILE", help="pairs to evaluate on before and after, either format")
    p.add_argument(
        "--matryoshka-dims", metavar="DIMS", help="also train truncated embeddings, largest first: 384,256,128"
    )
    p.add_argument("--epochs", type=int, help="passes over the pairs (default: the service's)")
    p.add_argument("--batch-size", type=int, help="pairs per training step (default: the service's)")
    p.add_argument("--learning-rate", type=float, help="peak learning rate (default: the service's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training (default 0)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    add_wait_options(p)
    p.set_defaults(func=cmd_fine_tune)
