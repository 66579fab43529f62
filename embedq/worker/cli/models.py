"""``embedq models list`` (light client), ``embedq models add`` and ``embedq models gate`` (worker extra)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from api_client import catalog
from api_client.errors import UnknownModel
from api_client.settings import get_settings
from embedq.worker.cli.common import UsageError, require

ORDER = 70
"""Where these commands come in ``embedq --help``."""

MODEL_FILES = ("modules.json", "config.json")
"""A sentence-transformers folder has modules.json; a plain transformers one has config.json."""

COLUMNS = ("name", "version", "dtype", "backend", "dimension", "source", "gate", "serving", "path")


def check_folder(path: Path) -> None:
    """``UsageError`` unless ``path`` is a folder that holds a model."""
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder")
    if not any((path / name).is_file() for name in MODEL_FILES):
        raise UsageError(
            f"{path} is not a sentence-transformers or transformers model folder (it has no {' or '.join(MODEL_FILES)})"
        )


def first_sentence(text: str) -> str:
    """The first sentence of a library's error (transformers appends every model type it knows)."""
    line = (text.strip().splitlines() or ["unknown reason"])[0]
    end = line.find(". ")
    return line[: end + 1] if end > 0 else line


def cmd_models_add(args: argparse.Namespace) -> int:
    require("worker", "embedq models add")
    path = Path(args.path).resolve()
    check_folder(path)
    database_url = get_settings().require_database()
    from api_client.db import connect
    from embedq.cores.models import ModelRegistry
    from embedq.cores.rerank import is_cross_encoder
    from embedq.worker.runtime import record_model

    if is_cross_encoder(path):
        return _add_cross_encoder(args.name, path, database_url)
    try:
        loaded = ModelRegistry().load(args.name, path)
    except UnknownModel as exc:
        reason = first_sentence(str(exc.__cause__ or exc.message))
        raise UnknownModel(f"{path} could not be loaded as a model: {reason}", detail=exc.detail) from exc
    with connect(database_url) as conn:
        row = record_model(conn, args.name, path, loaded, dtype="float32", source="registered", register=True)
    print(f"registered {row.name} version {row.version} ({row.dimension} dims) at {row.artifact_path}")
    return 0


def _add_cross_encoder(name: str, path: Path, database_url: str) -> int:
    """Register a CrossEncoder folder (a sequence-classification model) for reranking search hits."""
    from api_client.db import connect
    from embedq.cores.rerank import CrossEncoders
    from embedq.worker.store.models import upsert_model

    try:
        sha256, _ = CrossEncoders().load(name, path)
    except UnknownModel as exc:
        reason = first_sentence(str(exc.__cause__ or exc.message))
        raise UnknownModel(f"{path} could not be loaded as a cross-encoder: {reason}", detail=exc.detail) from exc
    with connect(database_url) as conn:
        row = upsert_model(
            conn=conn,
            name=name,
            sha256=sha256,
            artifact_path=str(path),
            dimension=None,
            max_seq_length=None,
            config={"source": "registered"},
            kind="cross-encoder",
            register=True,
        )
    print(f"registered cross-encoder {row.name} version {row.version} at {row.artifact_path}")
    return 0


def _rows() -> list[dict[str, Any]]:
    from api_client.db import connect
    from embedq.worker.store import status as status_store
    from embedq.worker.store.backends import all_gates, all_serving

    with connect(get_settings().require_database()) as conn:
        versions = status_store.model_versions(conn=conn)
        gates = {(name, version, backend): gate for name, version, backend, gate in all_gates(conn=conn)}
        serving = {
            (name, sha[:12], dtype): backend for (name, sha, dtype), (backend, _, _) in all_serving(conn=conn).items()
        }
    rows = [
        {
            **dataclasses.asdict(version),
            "gate": gates.get((version.name, version.version, version.backend)),
            "serving": _serving_cell(serving, version),
        }
        for version in versions
    ]
    recorded = {version.name for version in versions}
    for name in sorted(set(catalog.BUNDLED) - recorded):  # bundled, not loaded by any worker yet
        rows.append({**dict.fromkeys(COLUMNS), "name": name, "source": "bundled"})
    return sorted(rows, key=lambda row: row["name"])


def _serving_cell(serving: dict[tuple[str, str, str], str], version: Any) -> str | None:
    """``default`` on the row of the backend its version serves to requests that name none."""
    served = serving.get((version.name, version.version, version.dtype))
    if served is None:
        served = "torch"  # no promotion: torch
    return "default" if version.backend == served else None


def cmd_models_list(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cells = [[column for column in COLUMNS]] + [
        ["-" if row[column] is None else str(row[column]) for column in COLUMNS]
        for row in ({**row, "gate": gate_cell(row.get("gate"))} for row in rows)
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    for line in cells:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[-1]]))
    return 0


def gate_cell(gate: dict[str, Any] | None) -> str | None:
    """A gate record in a few characters: ``passed 2.1x`` (speed against torch), or ``FAILED invariance``."""
    if not gate:
        return None
    if not gate.get("passed"):
        return f"FAILED {','.join(gate.get('failed') or ['error'])}"
    ratio = (gate.get("speed") or {}).get("ratio")
    return f"passed {ratio}x" if ratio else f"passed {gate.get('delta', 0):+.4f}"


def register(sub: Any) -> None:
    """Add ``models list`` and ``models add`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "models",
        help="list or register models",
        description="List the models jobs may use, or register (add) a local sentence-transformers folder "
        "under a name; its version is the sha256 of its files.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="list the models jobs may use, one line per version",
        description="One line per model version and backend: name, version, dtype, backend, dimension, source "
        "(bundled or registered), gate (the quality gate's verdict: 'passed 2.0x' with its speed against torch, "
        "or 'FAILED' with the checks it failed), serving ('default' on the backend that requests naming none "
        "get, fleet-wide) and folder. A bundled model no worker has loaded yet shows only its name.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_models_list)
    add = actions.add_parser(
        "add",
        help="register a local sentence-transformers folder under a name",
        description="Load a local sentence-transformers (or transformers) folder once to check it, and "
        "register it under NAME: jobs asking for NAME then use it. Needs the worker extra.",
    )
    add.add_argument("name", help="the name jobs will ask for")
    add.add_argument("path", help="the model folder (it holds modules.json or config.json)")
    add.set_defaults(func=cmd_models_add)
    from embedq.worker.cli import gating

    gating.register_actions(actions)
