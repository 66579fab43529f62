"""``embedq models gate`` and ``embedq models promote``: judge a model's backends, choose the one it serves.

Which backend a model version serves to requests that name none
(``backend="auto"``) is decided once for the fleet and recorded
(``model_serving``): by ``promote``, or by ``gate --promote``, which gates
this machine's backends and promotes the fastest that passed. Workers follow
the record and never switch on their own. Both need the worker extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from api_client import catalog
from api_client.backends import BACKENDS
from api_client.settings import get_settings
from embedq.worker.cli.common import UsageError, require

GATE_CHOICES = ("all", *(name for name in BACKENDS if name not in ("auto", "torch")))


def _target(conn: Any, name: str) -> Any:
    """The ``embedq.worker.backends.Target`` (backend torch) of the version ``name`` resolves to now."""
    from api_client.store.models import resolve_model
    from embedq.cores.artifacts import folder_sha256
    from embedq.cores.models import resolve_path
    from embedq.worker.backends import Target

    row = resolve_model(conn=conn, name=name)
    registered = row if row is not None and row.registered else None
    path = resolve_path(name, registered.artifact_path if registered is not None else None)
    return Target(name, path, "registered" if registered else "bundled", folder_sha256(path), "torch")


def _wanted(asked: str, isa: str | None, bf16: str | None) -> list[str]:
    """Row backends to gate for ``--backend asked`` on this machine (``UsageError`` when it cannot run one)."""
    from embedq.cores import backends

    if asked == "all":
        return backends.candidates(isa, bf16)
    try:
        backend = backends.variant(asked, isa, bf16)
    except backends.BackendUnavailable as exc:
        raise UsageError(str(exc)) from exc
    reason = backends.unavailable(backend)
    if reason is not None:
        raise UsageError(f"{backend} is not available here: {reason}")
    return [backend]


def _say(as_json: bool) -> Any:
    return (lambda _line: None) if as_json else (lambda line: print(line, flush=True))


def cmd_models_gate(args: argparse.Namespace) -> int:
    require("worker", "embedq models gate")
    from api_client.db import connect
    from embedq.cores import backends
    from embedq.worker import backends as gating
    from embedq.worker.store import backends as store

    settings = get_settings()
    name = catalog.canonical_name(args.name)
    isa, bf16 = backends.isa(), backends.bf16_isa()
    wanted = _wanted(args.backend, isa, bf16)
    say = _say(args.json)
    with connect(settings.require_database()) as conn:
        target = _target(conn, name)
        with store.gate_lock(conn, sha256=target.sha256):
            served = store.serving(conn=conn, name=name, sha256=target.sha256, dtype=gating.DTYPE)
            if args.if_unpromoted and served is not None:
                say(f"{name} version {target.sha256[:12]} serves {served} (already promoted): nothing to gate")
                return 0
            say(
                f"{name} version {target.sha256[:12]} ({target.source}); int8 instruction set {isa or 'none'}, "
                f"bf16 {bf16 or 'none'}; gating {', '.join(wanted) or 'nothing (no backend runs here)'}"
            )
            records = gating.gate_version(
                conn,
                settings,
                target,
                wanted,
                threads=args.threads or len(os.sched_getaffinity(0)),
                say=say,
                first_passing=args.promote and args.backend == "all",
            )
            if args.json:
                print(json.dumps(records, indent=2))
            if args.promote:
                chosen = gating.fastest_passed(records) or "torch"
                gating.promote(conn, target, chosen, by=args.by)
                say(f"{name} version {target.sha256[:12]} now serves {chosen} to requests that name no backend")
    return 0 if any(record.get("passed") for record in records.values()) or not wanted else 1


def cmd_models_promote(args: argparse.Namespace) -> int:
    require("worker", "embedq models promote")
    from api_client.db import connect
    from embedq.cores import backends
    from embedq.worker import backends as gating

    name = catalog.canonical_name(args.name)
    backend = args.backend
    if backend != "torch":
        try:
            backend = backends.variant(backend, backends.isa(), backends.bf16_isa())
        except backends.BackendUnavailable as exc:
            raise UsageError(str(exc)) from exc
    with connect(get_settings().require_database()) as conn:
        target = _target(conn, name)
        gating.promote(conn, target, backend, by=args.by)
    print(f"{name} version {target.sha256[:12]} now serves {backend} to requests that name no backend")
    return 0


def register_actions(actions: Any) -> None:
    """Add ``gate`` and ``promote`` to the ``embedq models`` action parsers."""
    gate = actions.add_parser(
        "gate",
        help="build a model's faster backends and run their quality gate",
        description="Export the model's files for each backend this machine runs (ONNX fp32, OpenVINO f32, "
        "OpenVINO bf16 where the CPU computes bf16, ONNX int8 for this CPU's instruction set), store them as "
        "artifacts, and judge each against torch fp32 on data shipped with embedq: STS Benchmark dev Spearman "
        "within EMBEDQ_GATE_TOLERANCE (0.005), a text's vector independent of its batch-mates (1e-5 per "
        "component for fp32, 5e-3 for bf16, identical for int8), paraphrase pairs at 0.8 over 2,000 texts "
        "(recall and precision at least 0.95) and the top 10 of exact search over 20,000 documents (overlap at "
        "least 0.97). The figures are recorded with the model version (embedq models list). --promote then "
        "makes the fastest backend that passed the one the model serves fleet-wide. Exit status 1 when no "
        "backend passed. Needs the worker extra.",
    )
    gate.add_argument("name", help="the model name, as jobs ask for it")
    gate.add_argument(
        "--backend", choices=GATE_CHOICES, default="all", help="the backend to gate (default: all this machine runs)"
    )
    gate.add_argument(
        "--promote",
        action="store_true",
        help="promote the fastest backend that passed (torch when none did); with --backend all the backends "
        "are gated fastest first and the gate stops at the first that passes",
    )
    gate.add_argument(
        "--if-unpromoted", action="store_true", help="do nothing when a backend is already promoted for the version"
    )
    gate.add_argument("--by", default="embedq models gate", help="who promotes, as recorded (default: this command)")
    gate.add_argument("--threads", type=int, default=0, help="threads per backend (default: every usable core)")
    gate.add_argument("--json", action="store_true", help="print the gate records as JSON")
    gate.set_defaults(func=cmd_models_gate)
    promote = actions.add_parser(
        "promote",
        help="choose the backend a model serves to requests that name none, fleet-wide",
        description="Record BACKEND as what the model's current version serves to requests with backend "
        "'auto' (the default), on every worker from their next job (within 5 s). A backend other than torch "
        "must have passed its gate (embedq models gate). One job never mixes backends: jobs running at the "
        "moment keep the backend they started with. Needs the worker extra.",
    )
    promote.add_argument("name", help="the model name, as jobs ask for it")
    promote.add_argument(
        "--backend",
        required=True,
        choices=[name for name in BACKENDS if name != "auto"],
        help="the backend to serve (torch: exactly the library's floats)",
    )
    promote.add_argument("--by", default="embedq models promote", help="who promotes, as recorded")
    promote.set_defaults(func=cmd_models_promote)


def ensure_served(model: str, backend: str, *, by: str, env: dict[str, str] | None = None) -> int:
    """Before a worker consumes: make sure ``model``'s version has a fleet-wide backend decision.

    ``torch``: nothing to do (a version with no promotion serves torch).
    ``auto``: when nothing is promoted yet, gate this machine's backends and
    promote the fastest that passed; a backend name: gate and promote that
    one. Runs ``embedq models gate`` as a child process (torch and the
    backends are not loaded into the worker's supervisor); returns its status.
    """
    if backend == "torch":
        return 0
    import subprocess

    command = [
        sys.executable,
        "-P",  # the caller's working folder never shadows our packages
        "-m",
        "embedq.worker.cli",
        "models",
        "gate",
        model,
        "--backend",
        "all" if backend == "auto" else backend,
        "--promote",
        "--if-unpromoted",
        "--by",
        by,
    ]
    return subprocess.run(command, check=False, env={**os.environ, **(env or {})}).returncode
