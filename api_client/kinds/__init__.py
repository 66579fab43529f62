"""The job-kind registry: every kind of job embedq runs, declared once.

A kind is declared in one module of this package (a family of kinds may
share one): its request schema (an ``api_client.requests.Request``, the one
parser that the client, the worker's inline path and ``handle`` all run),
the reader of its output, its lane rule, its limits, how a large request
splits into chunk jobs and how their summaries merge, and the client methods
that submit it (``client_method``). The modules are found by ``pkgutil``
when this package is imported, so a new kind is a new module here, a core in
``embedq.cores``, a runner in ``embedq.worker.runners`` and a command in
``embedq.worker.cli``: no other file names it (docs/architecture.md, "Adding
a kind").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from api_client.errors import BadRequest
from api_client.requests import Context, Request
from api_client.routing import Thresholds, route
from api_client.schemas import JobInfo
from api_client.store.jobs import Chunk

Summary = dict[str, Any]
Merge = Callable[[Sequence[Summary]], Summary]


def last_of(summaries: Sequence[Summary]) -> Summary:
    """The default merge of chunk summaries: the last chunk's."""
    return dict(summaries[-1]) if summaries else {}


def summing(*fields: str, after: Callable[[Summary], Summary] | None = None) -> Merge:
    """A merge that sums ``fields`` over the chunks and takes every other field from the last chunk.

    ``after`` may then derive figures from the sums (a ratio, say).
    """

    def merge(summaries: Sequence[Summary]) -> Summary:
        merged = last_of(summaries)
        for name in fields:
            if any(name in summary for summary in summaries):
                merged[name] = sum(summary.get(name) or 0 for summary in summaries)
        return after(merged) if after is not None else merged

    return merge


@dataclass(frozen=True)
class Kind:
    """The declaration of one job kind."""

    name: str
    """The kind's name: ``jobs.kind``, and ``embedq.<name>`` is its Celery task."""
    request: type[Request]
    """The request schema: ``request.parse(raw, context)`` validates everything checkable."""
    read_result: Callable[[psycopg.Connection, JobInfo], Any]
    output: str
    """Where the output lies, for readers without our client (see docs/tables.md)."""
    text_fields: tuple[str, ...] = ()
    """The request's lists of texts: their count is the job's items, their length its characters."""
    lane: Literal["size", "interactive", "batch"] = "size"
    """``size``: small jobs go to the interactive lane, large ones to batch; else always that lane."""
    split: Callable[[psycopg.Connection, dict[str, Any], int], list[Chunk] | None] | None = None
    """The chunk jobs of a large request (given the chunk size), or ``None`` to run it whole."""
    merge: Merge = last_of
    """A chunked parent's summary from its chunks' summaries, in chunk order."""
    finalize: bool = False
    """A chunked parent runs itself once its chunks succeeded (e.g. a reindex builds and swaps)."""
    time_limits: tuple[int, int] | None = None
    """(soft, hard) seconds of one task; ``None``: the settings' ``soft_time_limit`` / ``time_limit``."""
    max_attempts: int | None = None
    """Attempts before the job fails; ``None``: the settings' ``max_attempts``."""

    @property
    def task_name(self) -> str:
        return f"embedq.{self.name}"

    def parse(self, raw: Any, context: Context) -> Any:
        """The validated request (``BadRequest``, ``LimitExceeded``, ``Unknown*`` on anything wrong)."""
        return self.request.parse(raw, context)

    def queue(
        self,
        request: Any,
        *,
        gpu_alive: bool,
        thresholds: Thresholds,
        lane: str | None = None,
        hardware: str | None = None,
    ) -> str:
        """The queue of a validated request: the kind's lane rule, then the router (hints win)."""
        n_items, n_chars = self.size(request)
        fixed = None if self.lane == "size" else self.lane
        return route(
            n_items=n_items,
            n_chars=n_chars,
            gpu_alive=gpu_alive,
            lane=lane or fixed,
            hardware=hardware,
            thresholds=thresholds,
        )

    def size(self, request: Any) -> tuple[int, int]:
        """``(items, characters)`` of a validated request: what routing and progress count."""
        lists = [getattr(request, field) for field in self.text_fields]
        return sum(len(texts) for texts in lists), sum(len(text) for texts in lists for text in texts)


KINDS: dict[str, Kind] = {}
"""Every declared kind by name, in declaration order."""
BY_TASK: dict[str, Kind] = {}
CLIENT_METHODS: dict[str, Callable[..., Any]] = {}
"""Methods of ``EmbedQ`` declared with the kinds (``client_method``)."""


def declare(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (a kind module calls it once, at import)."""
    if kind.name in KINDS:
        raise ValueError(f"job kind {kind.name!r} is declared twice")
    KINDS[kind.name] = kind
    BY_TASK[kind.task_name] = kind
    return kind


def client_method(function: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``function`` (``self`` first) a method of ``EmbedQ``, under its own name."""
    CLIENT_METHODS[function.__name__] = function
    return function


def kind_of(name: Any) -> Kind:
    """The kind named ``name``, or ``BadRequest``."""
    if isinstance(name, str) and name in KINDS:
        return KINDS[name]
    raise BadRequest(
        f"kind: unknown job kind {str(name)[:100]!r}; kinds are {', '.join(KINDS)}", detail={"field": "kind"}
    )


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_discover()
