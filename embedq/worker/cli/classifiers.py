"""Classifier commands, with the light client: ``classifiers``, ``classifier``, ``train``, ``classify``,
``promote``, ``rollback`` and ``triage``.

``embedq classifiers`` lists and ``embedq classifiers create NAME`` creates
(zero-shot from label descriptions); ``embedq classifier NAME`` shows one with
its versions. A name that is no classifier is bad input (exit 2), as is a bad
row of a training file, named by its line number. Files are read by
``classifier_files`` and results printed by ``classifier_views``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from api_client.errors import BadRequest
from api_client.kinds.classifiers import METHODS
from api_client.schemas import DEFAULT_MODEL
from embedq.worker.cli import classifier_views as views
from embedq.worker.cli.classifier_files import by_record_line, parse_params, read_label_descriptions, read_labelled
from embedq.worker.cli.collections import _print_json
from embedq.worker.cli.common import UsageError, client
from embedq.worker.cli.jobs import add_wait_options, await_job, by_line, read_texts

ORDER = 50
"""Where these commands come in ``embedq --help``."""


def _show(value: Any, as_json: bool, lines: Callable[[Any], list[str]]) -> None:
    """``value`` as JSON, or as the lines ``lines(value)`` makes of it."""
    if as_json:
        _print_json(value)
    elif shown := lines(value):
        print("\n".join(shown))


def cmd_classifiers(args: argparse.Namespace) -> int:
    with client() as eq:
        found = eq.classifiers()
    _show(found, args.json, views.classifiers_table)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    labels = read_label_descriptions(args.labels) if args.labels else None
    with client() as eq:
        _print_json(eq.create_classifier(args.name, model=args.model, labels=labels))
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    with client() as eq:
        info = eq.classifier(args.name)
        versions = eq.classifier_versions(args.name)
    _show({**info, "versions": versions}, args.json, lambda v: views.classifier_lines(info, v["versions"]))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    with client() as eq:
        info = eq.promote_classifier(args.name, version=args.version)
    _show(info, args.json, lambda i: [views.activated_line(i)])
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with client() as eq:
        info = eq.rollback_classifier(args.name)
    _show(info, args.json, lambda i: [views.activated_line(i)])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    texts, labels, records = read_labelled(args.file)
    params = parse_params(args.param)
    with client() as eq:
        try:
            job = eq.train_classifier(
                args.name,
                texts,
                labels,
                method=args.method,
                eval_split=args.eval_split,
                seed=args.seed,
                params=params,
                min_answered=args.min_answered,
                target_precision=args.target_precision,
                auto_promote=args.auto_promote,
                model=args.model,
                batch_size=args.batch_size,
            )
        except BadRequest as exc:
            raise by_record_line(exc, {"texts": records, "labels": records}) from exc
        if not await_job(job, args):
            return 0
        report = job.result(timeout=0)
    _show(report, args.json, views.report_lines)
    return 0


def _texts(args: argparse.Namespace) -> list[str]:
    """The texts: the arguments, or the lines of --file."""
    if (args.file is None) == (not args.texts):
        raise UsageError("give the texts as arguments or with --file FILE ('-' for stdin), one of the two")
    return read_texts(args.file) if args.file is not None else list(args.texts)


def _result(args: argparse.Namespace, submit: Callable[[], Any]) -> Any:
    """The result of the job ``submit()`` queues, or None with --no-wait; a bad text of a file names its line."""
    try:
        job = submit()
    except BadRequest as exc:
        raise (by_line(exc, {"texts": args.file}) if args.file is not None else exc) from exc
    return job.result(timeout=0) if await_job(job, args) else None


def cmd_classify(args: argparse.Namespace) -> int:
    texts = _texts(args)
    with client() as eq:
        predictions = _result(
            args,
            lambda: eq.classify(args.name, texts, top_k=args.top_k, version=args.version, batch_size=args.batch_size),
        )
    if predictions is not None:
        _show(predictions, args.json, lambda p: views.prediction_lines(texts, p, args.top_k > 1))
    return 0


def cmd_triage(args: argparse.Namespace) -> int:
    texts = _texts(args)
    with client() as eq:
        records = _result(
            args,
            lambda: eq.triage(
                args.name,
                collection=args.collection,
                texts=texts,
                k=args.k,
                duplicate_threshold=args.duplicate_threshold,
                top_k=args.top_k,
                version=args.version,
                batch_size=args.batch_size,
            ),
        )
    if records is not None:
        _show(records, args.json, lambda r: views.triage_lines(texts, r, args.top_k > 1))
    return 0


def _listing_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "classifiers",
        help="list classifiers, or create one",
        description="Without an action: one line per classifier: name, model, active version, its method, "
        "number of versions and its abstention threshold. `embedq classifiers create NAME` creates one; "
        "`embedq classifier NAME` shows one with its versions.",
    )
    p.add_argument("--json", action="store_true", help="print the classifiers as JSON")
    p.set_defaults(func=cmd_classifiers)
    actions = p.add_subparsers(dest="action", required=False, metavar="[ACTION]")
    create = actions.add_parser(
        "create",
        help="create a classifier, zero-shot from label descriptions if given",
        description="Create a classifier over a model and print it as JSON. With --labels it answers at once, "
        "zero-shot: a text takes the label whose description is nearest by cosine similarity (that version is "
        "active if the classifier had none). Creating one that exists over the same model prints it.",
    )
    create.add_argument("name", metavar="NAME", help="1 to 63 lower-case letters, digits, '-' or '_'")
    create.add_argument("--model", default=DEFAULT_MODEL, help=f"embedding model (default {DEFAULT_MODEL})")
    create.add_argument(
        "--labels",
        metavar="FILE",
        help='label descriptions: a JSON object {"label": "description" or ["descriptions"]} (a .json file), '
        "or a CSV with a header label,description (a label on several rows gets each description)",
    )
    create.set_defaults(func=cmd_create)

    p = sub.add_parser(
        "classifier",
        help="show one classifier and its versions",
        description="Print a classifier (model, active version, number of versions) and one row per version: "
        "version, '*' on the active one, method, held-out accuracy and macro-F1, abstention threshold and "
        "its coverage. --json prints the classifier with a list of its versions (metrics, parameters, data "
        "fingerprint, parent, job).",
    )
    p.add_argument("name", metavar="NAME", help="the classifier's name")
    p.add_argument("--json", action="store_true", help="print the classifier and its versions as JSON")
    p.set_defaults(func=cmd_classifier)

    p = sub.add_parser(
        "promote",
        help="make a version the one classify uses",
        description="Make VERSION the active version of a classifier (the one it replaces is kept for "
        "`embedq rollback`); workers use it from their next classify job. Prints what is active.",
    )
    p.add_argument("name", metavar="NAME", help="the classifier's name")
    p.add_argument("version", metavar="VERSION", type=int, help="the version number (see `embedq classifier NAME`)")
    p.add_argument("--json", action="store_true", help="print the classifier as JSON")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser(
        "rollback",
        help="make the previously active version active again",
        description="Make the version that was active before the current one active again. Prints what is active.",
    )
    p.add_argument("name", metavar="NAME", help="the classifier's name")
    p.add_argument("--json", action="store_true", help="print the classifier as JSON")
    p.set_defaults(func=cmd_rollback)


def _train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a new version of a classifier from labelled texts",
        description="Train a new version of classifier NAME (created over --model if it does not exist) on "
        "FILE: a CSV with a header text,label (UTF-8, quoted fields may span lines), or JSON lines "
        '{"text": "...", "label": "..."} for a .jsonl file. A bad row is reported by its line number. Holds out '
        "--eval-split of the examples (stratified), reports on them and chooses the abstention threshold there. "
        "Prints the version, whether it is active, held-out accuracy and macro-F1, the threshold with its "
        "coverage and the accuracy of the answered part, and a per-class table; --json prints the whole report "
        "(confusion matrix included). The first version is active at once; later ones with `embedq promote`, "
        "or --auto-promote.",
    )
    p.add_argument("name", metavar="NAME", help="the classifier's name")
    p.add_argument("file", metavar="FILE", help="CSV text,label or JSON lines (.jsonl)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="logreg",
        help="a head on the model's embeddings (logreg, linear_svc, knn, mlp: seconds) or setfit (fine-tunes "
        "the encoder: minutes); default logreg",
    )
    p.add_argument("--eval-split", type=float, default=0.2, help="share of examples held out (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default 0)")
    p.add_argument(
        "--min-answered",
        type=float,
        help="abstention threshold answering this share of held-out examples (default 0.95)",
    )
    p.add_argument("--target-precision", type=float, help="instead: the threshold reaching this answered accuracy")
    p.add_argument(
        "--auto-promote",
        action="store_true",
        help="make the new version active if its held-out macro-F1 beats the active version's",
    )
    p.add_argument("--model", help="embedding model of a new classifier (default: the classifier's)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the method (repeatable), VALUE as JSON when it parses, e.g. C=10",
    )
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    add_wait_options(p)
    p.set_defaults(func=cmd_train)


class _TextsAnywhere(argparse.ArgumentParser):
    """A parser whose texts may follow its options (``triage NAME --collection C "text"``); argparse alone
    ends a list of positional arguments at the first option after its first item."""

    _inside = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inside:  # parse_known_intermixed_args parses twice through this method
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _texts_options(p: argparse.ArgumentParser) -> None:
    p.__class__ = _TextsAnywhere
    p.add_argument("name", metavar="NAME", help="the classifier's name")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="a text (several for one job)")
    p.add_argument("--file", metavar="FILE", help="read the texts from FILE instead, one a line ('-' for stdin)")
    p.add_argument("--top-k", type=int, default=1, help="best labels per text (default 1)")
    p.add_argument("--version", type=int, help="classify with this version (default: the active one)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    add_wait_options(p)


def _classify_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "classify",
        help="classify texts with a classifier",
        description="Classify the texts and print one line per text: label<TAB>score<TAB>'abstained' (the "
        "score is under the version's threshold: hand it to a person) or '-'<TAB>text; with --top-k above 1 "
        "a column 'label score, ...' of the best labels comes before the text. Tabs and line breaks in a text "
        'become spaces. --json prints the predictions [{"label", "score", "top", "abstained"}, ...].',
    )
    _texts_options(p)
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "triage",
        help="category, similar documents and likely duplicates of new tickets",
        description="For each text, one job finds its category (a classify prediction), the -k most similar "
        "documents of --collection, and those scoring at least --duplicate-threshold as likely duplicates. "
        "Prints per text a block: '# TEXT', 'category<TAB>' and the prediction as `embedq classify` prints "
        "it, then one line per similar document: 'duplicate' or 'similar'<TAB>score<TAB>id<TAB>text. --json "
        'prints [{"category", "similar", "duplicates"}, ...].',
    )
    _texts_options(p)
    p.add_argument("--collection", required=True, help="the collection of past tickets to search")
    p.add_argument("-k", type=int, default=5, help="similar documents per text (default 5)")
    p.add_argument(
        "--duplicate-threshold", type=float, default=0.9, help="score from which a hit is a duplicate (default 0.9)"
    )
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=cmd_triage)


def register(sub: Any) -> None:
    """Add the classifier commands to the command parsers ``sub``."""
    _listing_parsers(sub)
    _train_parser(sub)
    _classify_parsers(sub)
