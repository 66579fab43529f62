"""The ``embedq`` command line.

Each module of this package that has a ``register(sub)`` holds a group of
commands and adds their parsers; ``command_groups`` finds them (a new
module is a new group) and orders them by their ``ORDER``. Modules
import only the light client at the top: a command that needs an extra checks
for it (``embedq.worker.extras.require``) before importing anything of it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
import sys
from importlib import metadata
from types import ModuleType

from pydantic import ValidationError

from api_client.errors import (
    BadRequest,
    EmbedQError,
    IdempotencyConflict,
    JobCancelled,
    JobNotFound,
    UnknownClassifier,
    UnknownCollection,
    UnknownModel,
)
from embedq.worker import logs
from embedq.worker.cli.common import EXIT_FAILED, EXIT_USAGE, UsageError


def command_groups() -> list[ModuleType]:
    """The modules of this package with a ``register(sub)`` that adds their commands, in help order (``ORDER``)."""
    found = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    groups = [module for module in found if hasattr(module, "register")]
    return sorted(groups, key=lambda module: (getattr(module, "ORDER", 100), module.__name__))


INPUT_ERRORS = (BadRequest, UnknownModel, UnknownCollection, UnknownClassifier, JobNotFound, IdempotencyConflict)
"""Errors caused by what the caller asked for: exit status 2, like a usage error."""

DESCRIPTION = """\
embedq: a job service for sentence-transformers workloads.

Servers come from EMBEDQ_BROKER_URL and EMBEDQ_DATABASE_URL, else from the env
file named by EMBEDQ_ENV_FILE, else from .embedq/env (written by `embedq up`).
"""


CLI_TERMS = {
    "create_collection()": "`embedq collections create NAME`",
    "create_collection": "`embedq collections create NAME`",
    "create_classifier()": "`embedq classifiers create NAME --labels FILE`",
    "train_classifier()": "`embedq train NAME FILE`",
    "build_index()": "`embedq index build NAME`",
    "promote_classifier()": "`embedq promote NAME VERSION`",
}
"""How the client's methods that an error message suggests are spelled on the command line."""


def in_cli_terms(message: str) -> str:
    """``message`` with the client methods it suggests replaced by the commands that do the same."""
    for method, command in CLI_TERMS.items():
        message = re.sub(rf"\b{re.escape(method)}(?![\w(])", command, message)
    return message


def version() -> str:
    """The installed package's version, or a note that it is not installed as a package."""
    try:
        return metadata.version("embedq")
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedq", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"embedq {version()}", help="print the version")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in command_groups():
        group.register(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    """The command's exit status; every expected failure is one line on stderr."""
    try:
        return int(args.func(args) or 0)
    except JobCancelled as exc:
        print(f"embedq: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except EmbedQError as exc:
        print(f"embedq: {type(exc).__name__}: {in_cli_terms(exc.message)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, INPUT_ERRORS) else EXIT_FAILED
    except UsageError as exc:
        print(f"embedq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        print(f"embedq: invalid EMBEDQ_* settings: {problems}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"embedq: {exc}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("up", "worker"):  # those two configure logging for the services they run
        logging.basicConfig(level=logging.WARNING, format="embedq: %(message)s")
        logs.quiet_libraries()  # a command that loads a model (the gate) says nothing of the libraries' chatter
    # Connection retries of the pool and the listener: their reasons reach the user in our errors.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    logging.getLogger("api_client.notify").setLevel(logging.CRITICAL)
    return _run(args)
