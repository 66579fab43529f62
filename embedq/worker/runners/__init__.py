"""One runner per job kind, registered with ``@runs(kind)``: a claimed job's typed request in, an ``Outcome`` out.

Runners are views (as arq's ``functions=[...]`` and dramatiq's ``@actor``
register plain functions): they take the request ``handle`` parsed, compute
through the runtime's models and caches and the kind's pure core in
``embedq.cores``, and return what to record. They never parse a message,
commit or finish a job: ``embedq.worker.finishing`` writes every kind's
outputs and final state the same way, in one transaction fenced by the
claim. The modules of this package are found by ``pkgutil``; importing it
fails when a kind declared in ``api_client.kinds`` has no runner.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from api_client.kinds import KINDS

if TYPE_CHECKING:
    from embedq.worker.runtime import Runtime
    from embedq.worker.store.jobs import Claim


@dataclass
class Outcome:
    """What a runner hands back: the job's summary and what to write with its final state."""

    summary: dict[str, Any]
    write: Callable[[psycopg.Connection], dict[str, Any] | None] | None = None
    """Outputs, keyed by (job, item) or by content, written in the transaction that finishes the job; what it
    returns (figures only the write knows, such as rows changed) joins the summary."""
    total: int | None = None
    """Items of the job (its progress when done); ``None`` keeps the total it was created with."""
    notice: tuple[int, str] | None = None
    """A small result announced with the finished row: an encode job's dimension and raw vectors (base64)."""


Runner = Callable[["Runtime", "Claim", Any], Outcome]
RUNNERS: dict[str, Runner] = {}


def runs(kind: str) -> Callable[[Runner], Runner]:
    """Register the decorated function as the runner of ``kind``."""

    def register(runner: Runner) -> Runner:
        if kind not in KINDS:
            raise ValueError(f"@runs({kind!r}): no such job kind is declared in api_client.kinds")
        if kind in RUNNERS:
            raise ValueError(f"job kind {kind!r} has two runners: {RUNNERS[kind].__module__} and {runner.__module__}")
        RUNNERS[kind] = runner
        return runner

    return register


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    missing = [kind for kind in KINDS if kind not in RUNNERS]
    if missing:
        raise ImportError(
            f"job kind(s) {', '.join(missing)} declared in api_client.kinds have no runner: add a module to "
            "embedq.worker.runners with a function decorated @runs(<kind>)"
        )


_discover()
