"""Reading the files of the classifier commands: labelled examples, label descriptions, pairs, ``--param``.

Every reader keeps the line number where each record starts, so a bad row,
whether the file's shape is wrong or the request's parser refuses a value, is
reported as ``FILE line N``. CSV files are read with the csv module (quoted
fields may span lines), UTF-8 with or without a byte-order mark; a file whose
name ends in ``.jsonl`` is read as one JSON object a line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from api_client.errors import BadRequest
from embedq.worker.cli.common import UsageError
from embedq.worker.cli.jobs import read_texts

_INDEXED = re.compile(r"^(texts|labels|pairs|eval_pairs)\[(\d+)\](?:\[\d+\])?: ")
_COLUMN = {"texts": "text", "labels": "label"}


@dataclass(frozen=True)
class Records:
    """The rows of a file as dicts by column name, and the line each starts on."""

    where: str
    rows: list[dict[str, Any]]
    lines: list[int]


def read_text(path: str) -> str:
    """The file as ``read_texts`` reads it (UTF-8, ``\r\n`` as ``\n``, blank lines at the end dropped), a
    byte-order mark removed; undecodable input is named by file and line."""
    try:
        lines = read_texts(path)
    except BadRequest as exc:
        line = exc.detail.get("line")
        raise BadRequest(f"{path} line {line}: not valid UTF-8", detail={"line": line}) from exc
    return "\n".join(lines).removeprefix("\ufeff")


def _bad(where: str, line: int, reason: str) -> BadRequest:
    return BadRequest(f"{where} line {line}: {reason}", detail={"line": line})


def read_csv(path: str, columns: tuple[str, ...]) -> Records:
    """Rows of a CSV file whose header names ``columns`` (in any order; other columns are ignored).

    Blank lines are skipped; a row with another number of fields than the
    header is refused (a text holding a comma must be quoted).
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header: list[str] | None = None
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
                missing = [c for c in columns if c not in header]
                if missing:
                    want = ",".join(columns)
                    raise _bad(path, line, f"the header must name the columns {want} (got {','.join(row)!r})")
                continue
            if len(row) != len(header):
                raise _bad(
                    path,
                    line,
                    f"expected {len(header)} fields ({','.join(header)}), got {len(row)}; "
                    "quote a field that holds a comma",
                )
            cells = dict(zip(header, row, strict=True))
            rows.append({c: cells[c] for c in columns})
            lines.append(line)
    except csv.Error as exc:
        raise _bad(path, reader.line_num, f"not valid CSV: {exc}") from exc
    if header is None:
        raise UsageError(f"{path}: empty file; the first line is the header {','.join(columns)}")
    return Records(path, rows, lines)


def read_jsonl(path: str, columns: tuple[str, ...]) -> Records:
    """One JSON object a line holding ``columns`` (other keys are ignored); blank lines skipped."""
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    shape = "{" + ", ".join(f'"{c}": ...' for c in columns) + "}"
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad(path, n, f"not valid JSON: {exc.msg}") from exc
        missing = [c for c in columns if c not in record] if isinstance(record, dict) else columns
        if missing:
            raise _bad(path, n, f"expected a JSON object {shape}; missing {', '.join(missing)}")
        rows.append({c: record[c] for c in columns})
        lines.append(n)
    return Records(path, rows, lines)


def read_table(path: str, columns: tuple[str, ...]) -> Records:
    """``read_jsonl`` for a ``.jsonl`` file, else ``read_csv``; at least one row."""
    found = read_jsonl(path, columns) if path.endswith(".jsonl") else read_csv(path, columns)
    if not found.rows:
        raise UsageError(f"{path}: no rows after the header")
    return found


def read_labelled(path: str) -> tuple[list[Any], list[Any], Records]:
    """Texts and labels of a training file: CSV with a header ``text,label``, or JSON lines ``{"text", "label"}``."""
    found = read_table(path, ("text", "label"))
    return [r["text"] for r in found.rows], [r["label"] for r in found.rows], found


def _header(path: str) -> list[str]:
    """The lower-cased column names of a CSV file's first non-blank line (keys of a JSON line's first object)."""
    text = read_text(path)
    first = next((line for line in text.split("\n") if line.strip()), "")
    if path.endswith(".jsonl"):
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            return []
        return list(record) if isinstance(record, dict) else []
    return [cell.strip().lower() for cell in next(csv.reader([first]), [])]


PAIRS = ("anchor", "positive")
SCORED = ("text1", "text2", "score")


def pairs_format(path: str) -> str:
    """``mnrl`` for a file of ``anchor,positive`` pairs, ``cosent`` for ``text1,text2,score``."""
    header = _header(path)
    if all(c in header for c in SCORED):
        return "cosent"
    if all(c in header for c in PAIRS):
        return "mnrl"
    raise UsageError(
        f"{path}: the header must be anchor,positive (pairs for mnrl) or text1,text2,score (scored pairs "
        f"for cosent), got {','.join(header)!r}"
    )


def read_pairs(path: str, loss: str) -> tuple[list[list[Any]], Records]:
    """``[anchor, positive]`` items for ``mnrl``, ``[text1, text2, score]`` for ``cosent``, from CSV or JSON lines."""
    found = read_table(path, PAIRS if loss == "mnrl" else SCORED)
    if loss == "mnrl":
        return [[r["anchor"], r["positive"]] for r in found.rows], found
    items = []
    for row, line in zip(found.rows, found.lines, strict=True):
        score = row["score"]
        try:
            value = float(score) if isinstance(score, str) else score
        except ValueError as exc:
            raise _bad(path, line, f"score: {score!r} is not a number") from exc
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _bad(path, line, f"score: {score!r} is not a finite number")
        items.append([row["text1"], row["text2"], value])
    return items, found


def read_label_descriptions(path: str) -> dict[str, str | list[str]]:
    """Zero-shot labels: a JSON object ``{label: description or [descriptions]}`` (a ``.json`` file or one
    starting with ``{``), else a CSV ``label,description`` where a label given on several rows gets each."""
    text = read_text(path)
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _bad(path, exc.lineno, f"not valid JSON: {exc.msg}") from exc
        if not isinstance(labels, dict):
            raise BadRequest(f'{path}: expected a JSON object {{"label": "description", ...}}')
        return labels
    found = read_table(path, ("label", "description"))
    described: dict[str, list[str]] = {}
    for row in found.rows:
        described.setdefault(row["label"], []).append(row["description"])
    return {label: d[0] if len(d) == 1 else d for label, d in described.items()}


def by_record_line(exc: BadRequest, files: dict[str, Records]) -> BadRequest:
    """The same error, naming the file line of the record the parser refused (``texts[3]`` is the fourth row).

    ``files`` maps the request's list fields (``texts``, ``labels``, ``pairs``, ``eval_pairs``) to the
    records they were read from.
    """
    match = _INDEXED.match(exc.message)
    found = files.get(match[1]) if match else None
    if match is None or found is None or int(match[2]) >= len(found.lines):
        return exc
    line = found.lines[int(match[2])]
    column = f" ({_COLUMN[match[1]]})" if match[1] in _COLUMN else ""
    rest = exc.message[match.end() :]
    return type(exc)(f"{found.where} line {line}{column}: {rest}", detail={**exc.detail, "line": line})


def parse_params(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` options: a value that parses as JSON is that value (``C=10``, ``hidden=[64]``), else a string."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[key.strip()] = text
    return params
