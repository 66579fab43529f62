"""The job-kind registry: every kind of job embedq runs, declared once.

Each entry names the kind's Celery task, the function that validates its
request (run by the client before queueing and by the worker on every
message), its size for routing, whether small jobs take the interactive
lane, the reader of its output, its time limits and attempts, and the list
field that is split into chunk jobs when a request is large. The client, the
worker's dispatch and the sweeper all look kinds up here.

Adding a kind: an entry here, a request schema, a runner in ``worker/runners``,
a pure core in ``tasks/``, tests (docs/architecture.md walks through it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from api_client import results
from api_client.errors import BadRequest
from api_client.schemas import JobInfo, Limits, parse_encode_request
from api_client.schemas_similarity import parse_paraphrases_request, parse_similarity_request
from api_client.states import JobKind


@dataclass(frozen=True)
class Kind:
    """The declaration of one job kind."""

    kind: JobKind
    task_name: str
    parse: Callable[[Any, Limits], Any]
    """Raw JSON request → validated request model; raises ``BadRequest`` / ``LimitExceeded``."""
    text_fields: tuple[str, ...]
    """The request's lists of texts: their count is the job's items, their length its characters."""
    read_result: Callable[[psycopg.Connection, JobInfo], Any]
    output: str
    """Where the output lies, for readers without our client (see docs/tables.md)."""
    small_is_interactive: bool = True
    """Small jobs go to the interactive lane; large ones (and all when False) to batch."""
    chunk_field: str | None = None
    """The list split into chunk jobs when it holds more than ``chunk_size`` items."""
    time_limits: tuple[int, int] | None = None
    """(soft, hard) seconds of one task; ``None``: the settings' ``soft_time_limit`` / ``time_limit``."""
    max_attempts: int | None = None
    """Attempts before the job fails; ``None``: the settings' ``max_attempts``."""

    def size(self, request: Any) -> tuple[int, int]:
        """``(items, characters)`` of a validated request: what routing and progress count."""
        lists = [getattr(request, field) for field in self.text_fields]
        return sum(len(texts) for texts in lists), sum(len(text) for texts in lists for text in texts)


KINDS: dict[JobKind, Kind] = {
    JobKind.ENCODE: Kind(
        kind=JobKind.ENCODE,
        task_name="embedq.encode",
        parse=parse_encode_request,
        text_fields=("texts",),
        read_result=results.read_vectors,
        output="encode_outputs JOIN embeddings USING (model_id, text_sha256), by item",
        chunk_field="texts",
    ),
    JobKind.SIMILARITY: Kind(
        kind=JobKind.SIMILARITY,
        task_name="embedq.similarity",
        parse=parse_similarity_request,
        text_fields=("queries", "texts"),
        read_result=results.read_scores,
        output="job_arrays: 'scores' (float32, [queries, texts], or [n] when pairwise)",
    ),
    JobKind.PARAPHRASES: Kind(
        kind=JobKind.PARAPHRASES,
        task_name="embedq.paraphrases",
        parse=parse_paraphrases_request,
        text_fields=("texts",),
        read_result=results.read_pairs,
        output="job_arrays: 'scores' (float32 [pairs]) and 'pairs' (int32 [pairs, 2]), best first",
    ),
}

BY_TASK: dict[str, Kind] = {spec.task_name: spec for spec in KINDS.values()}


def kind_of(name: str) -> Kind:
    """The kind named ``name`` (a ``JobKind`` value), or ``BadRequest``."""
    try:
        return KINDS[JobKind(name)]
    except ValueError as exc:
        raise BadRequest(
            f"kind: unknown job kind {name!r}; kinds are {', '.join(map(str, KINDS))}", detail={"field": "kind"}
        ) from exc
