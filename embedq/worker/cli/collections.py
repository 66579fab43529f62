"""Collection commands, with the light client: ``collections``, ``collection``, ``upsert``, ``delete``,
``index build``, ``search`` and ``reindex``.

``embedq collections`` lists and ``embedq collections create NAME`` creates;
``embedq collection NAME`` shows one. A name that is no collection is bad
input (exit 2), as is a bad line of an upsert file, named by its line number.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from api_client.errors import BadRequest
from api_client.kinds.collection_fields import INDEX_KINDS
from api_client.schemas import DEFAULT_MODEL
from embedq.worker.cli.common import UsageError, client
from embedq.worker.cli.jobs import add_wait_options, await_job, read_texts

ORDER = 40
"""Where these commands come in ``embedq --help``."""

_WHERE = re.compile(r"^documents(?:\.text)?\[(\d+)\](?:\.(\w+))?: ")
_REFERENCE = re.compile(r"documents\[(\d+)\]")


def read_documents(path: str, *, id_prefix: str = "") -> tuple[list[dict[str, Any]], list[int]]:
    """The documents of ``path`` and the line number of each.

    JSON lines when the first non-blank line starts with ``{``: one object
    ``{"id", "text", "metadata"}`` a line, blank lines skipped. Otherwise one
    text a line, its id ``id_prefix`` + its line number.
    """
    lines = read_texts(path)
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    where = "stdin" if path == "-" else path
    first = next((line for line in lines if line.strip()), "")
    if not first.lstrip().startswith("{"):
        return [{"id": f"{id_prefix}{n}", "text": text} for n, text in enumerate(lines, 1)], list(
            range(1, len(lines) + 1)
        )
    documents, numbers = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"{where} line {n}: not valid JSON: {exc.msg}", detail={"line": n}) from exc
        if not isinstance(doc, dict):
            raise BadRequest(
                f'{where} line {n}: expected a JSON object {{"id", "text", "metadata"}}', detail={"line": n}
            )
        documents.append(doc)
        numbers.append(n)
    return documents, numbers


def by_document_line(exc: BadRequest, where: str, numbers: list[int]) -> BadRequest:
    """The same error, naming the file line of ``documents[i]`` (and of any other document it mentions)."""
    match = _WHERE.match(exc.message)
    if match is None or int(match[1]) >= len(numbers):
        return exc
    line = numbers[int(match[1])]
    rest = _REFERENCE.sub(
        lambda m: f"line {numbers[int(m[1])]}" if int(m[1]) < len(numbers) else m[0], exc.message[match.end() :]
    )
    field = f"{match[2]}: " if match[2] else ""
    return type(exc)(f"{where} line {line}: {field}{rest}", detail={**exc.detail, "line": line})


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...]) -> None:
    """Rows as aligned columns; the columns in ``right`` aligned right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        print("  ".join(cells).rstrip())


def cmd_collections(args: argparse.Namespace) -> int:
    with client() as eq:
        found = eq.collections()
    if args.json:
        _print_json(found)
        return 0
    rows: list[tuple[str, ...]] = [("name", "model", "version", "size", "index", "pending")]
    for c in found:
        index = c["active_index"]
        cell = f"v{index['version']} {index['kind']} {index['count']}" if index else "-"
        rows.append((c["name"], c["model"], c["model_version"] or "-", str(c["size"]), cell, str(c["pending"])))
    _table(rows, right=(3, 5))
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    with client() as eq:
        _print_json(eq.create_collection(args.name, model=args.model, normalize=args.normalize))
    return 0


def cmd_collection(args: argparse.Namespace) -> int:
    with client() as eq:
        _print_json(eq.collection(args.name))
    return 0


def _finish(job: Any, args: argparse.Namespace) -> int:
    """Wait for ``job`` as ``await_job`` does, then print its result summary as JSON."""
    if await_job(job, args):
        _print_json(job.result(timeout=0))
    return 0


def cmd_upsert(args: argparse.Namespace) -> int:
    documents, numbers = read_documents(args.file, id_prefix=args.id_prefix)
    if not documents:
        raise UsageError(f"{args.file}: no documents to upsert")
    with client() as eq:
        try:
            job = eq.upsert(args.name, documents, batch_size=args.batch_size)
        except BadRequest as exc:
            raise by_document_line(exc, "stdin" if args.file == "-" else args.file, numbers) from exc
        return _finish(job, args)


def cmd_delete(args: argparse.Namespace) -> int:
    with client() as eq:
        return _finish(eq.delete(args.name, args.ids), args)


def cmd_index_build(args: argparse.Namespace) -> int:
    with client() as eq:
        return _finish(eq.build_index(args.name, kind=args.kind), args)


def cmd_reindex(args: argparse.Namespace) -> int:
    with client() as eq:
        return _finish(eq.reindex(args.name, model=args.model, kind=args.kind, min_recall=args.min_recall), args)


def parse_filter(items: list[str]) -> dict[str, Any] | None:
    """``key=value`` pairs as a metadata filter: a value that parses as JSON is that value, else a string."""
    if not items:
        return None
    found: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--filter {item!r}: expected KEY=VALUE")
        if key in found:
            raise UsageError(f"--filter {key!r} is given twice; a filter holds one value per key")
        try:
            found[key] = json.loads(text)
        except json.JSONDecodeError:
            found[key] = text
    return found


def cmd_search(args: argparse.Namespace) -> int:
    with client() as eq:
        job = eq.search(
            args.name,
            args.queries,
            k=args.k,
            filter=parse_filter(args.filter),
            threshold=args.threshold,
            include=("text", "metadata") if args.json else ("text",),
            batch_size=args.batch_size,
        )
        if not await_job(job, args):
            return 0
        results = job.result(timeout=0)
        summary = job.info().result or {}
    if summary.get("filter_matched") == 0:
        keys = ", ".join(summary.get("metadata_keys") or []) or "none"
        print(
            f"embedq: no document of {args.name} matches the filter {parse_filter(args.filter)} "
            f"(the metadata keys of its documents: {keys}; values match exactly, case included)",
            file=sys.stderr,
        )
    if args.json:
        _print_json(results)
        return 0
    for n, (query, hits) in enumerate(zip(args.queries, results, strict=True)):
        if len(args.queries) > 1:
            sys.stdout.write(("\n" if n else "") + f"# {_one_line(query)}\n")
        for hit in hits:
            sys.stdout.write(f"{hit['score']:.4f}\t{_one_line(hit['id'])}\t{_one_line(hit.get('text', ''))}\n")
    return 0


def _collection_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "collections",
        help="list collections, or create one",
        description="Without an action: one line per collection: name, model, model version (bound by its "
        "first upsert), size (documents not deleted), active index (version, kind, count) and pending "
        "(documents changed since that index was built, searched exactly until the next build). "
        "`embedq collections create NAME` creates one; `embedq collection NAME` shows one as JSON.",
    )
    p.add_argument("--json", action="store_true", help="print the collections as JSON")
    p.set_defaults(func=cmd_collections)
    actions = p.add_subparsers(dest="action", required=False, metavar="[ACTION]")
    create = actions.add_parser(
        "create",
        help="create a collection",
        description="Create a collection bound to a model (its version is bound by the first upsert) and print "
        "it as JSON. Creating one that exists with the same model and normalization prints it unchanged; "
        "with another, it is refused.",
    )
    create.add_argument("name", metavar="NAME", help="1 to 63 lower-case letters, digits, '-' or '_'")
    create.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    create.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="score by dot product of the raw vectors instead of cosine similarity",
    )
    create.set_defaults(func=cmd_create)

    p = sub.add_parser(
        "collection",
        help="show one collection as JSON",
        description="Print one collection as JSON: model and version, metric, size, pending, active index.",
    )
    p.add_argument("name", metavar="NAME", help="the collection's name")
    p.set_defaults(func=cmd_collection)


def _document_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "upsert",
        help="add or replace documents from a file",
        description="Read documents from FILE and upsert them. JSON lines when the first non-blank line starts "
        'with "{": one object {"id": "...", "text": "...", "metadata": {...}} a line (id a string, metadata '
        "optional), blank lines skipped. Otherwise one text a line (as `embedq encode` reads them), its id its "
        "line number from 1 with --id-prefix in front. A bad line is reported by its line number. Prints the "
        "job's summary as JSON; --no-wait prints only the job id.",
    )
    p.add_argument("name", metavar="NAME", help="the collection's name")
    p.add_argument("file", metavar="FILE", help="JSON lines or one text a line ('-' for stdin)")
    p.add_argument(
        "--id-prefix", default="", help="for a plain-text FILE: put this before each line number to make the id"
    )
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    add_wait_options(p)
    p.set_defaults(func=cmd_upsert)

    p = sub.add_parser(
        "delete",
        help="delete documents by id",
        description="Delete documents by id; they leave search results once the job succeeded. Prints the "
        "job's summary as JSON.",
    )
    p.add_argument("name", metavar="NAME", help="the collection's name")
    p.add_argument("ids", nargs="+", metavar="ID", help="ids of the documents to delete")
    add_wait_options(p)
    p.set_defaults(func=cmd_delete)


def _index_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "index",
        help="build a collection's FAISS index",
        description="`embedq index build NAME` builds a FAISS index of a collection and makes it active.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="build a FAISS index of a collection and make it active",
        description="Build a FAISS index of every document of the collection and make it the active index "
        "version; documents changed later are searched exactly until the next build. Prints the job's "
        "summary as JSON.",
    )
    build.add_argument("name", metavar="NAME", help="the collection's name")
    build.add_argument(
        "--kind", choices=INDEX_KINDS, default="auto", help="index kind (default auto: chosen by the size)"
    )
    add_wait_options(build)
    build.set_defaults(func=cmd_index_build)

    p = sub.add_parser(
        "reindex",
        help="re-embed a collection, build and swap if recall holds",
        description="Re-embed every document (with --model, or the collection's own model), build an index, "
        "and make it active only if its recall@10 against exact search is at least --min-recall (else the "
        "job fails with GateFailed and searches keep the old version). Prints the job's summary as JSON.",
    )
    p.add_argument("name", metavar="NAME", help="the collection's name")
    p.add_argument("--model", default=None, help="the new model (default: the collection's own)")
    p.add_argument("--kind", choices=INDEX_KINDS, default="auto", help="index kind (default auto: chosen by the size)")
    p.add_argument("--min-recall", type=float, default=0.95, help="recall@10 the new index needs (default 0.95)")
    add_wait_options(p)
    p.set_defaults(func=cmd_reindex)


def _search_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="search a collection",
        description="Search a collection and print, per query, its hits best first, one a line: "
        "score<TAB>id<TAB>text (tabs and line breaks in a text become spaces). With more than one query, "
        "each query's hits follow a line '# QUERY', blocks apart by a blank line. --json prints the hits "
        '[[{"id", "score", "text", "metadata"}, ...], ...], one list per query. Scores are cosine similarity '
        "for a normalized collection, dot product otherwise.",
    )
    p.add_argument("name", metavar="NAME", help="the collection's name")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="a query text (several for one job)")
    p.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep documents whose metadata KEY equals VALUE (repeat for several keys, all must match); "
        "VALUE is JSON when it parses as JSON (priority=1, urgent=true, code='\"007\"'), else a string",
    )
    p.add_argument("--threshold", type=float, default=None, help="drop hits scoring less than this")
    p.add_argument("--batch-size", type=int, default=32, help="queries per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="print the hits, with metadata, as JSON")
    add_wait_options(p)
    p.set_defaults(func=cmd_search)


def register(sub: Any) -> None:
    """Add the collection commands to the command parsers ``sub``."""
    _collection_parsers(sub)
    _document_parsers(sub)
    _index_parsers(sub)
    _search_parser(sub)
