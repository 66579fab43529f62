"""The job-kind registry: every kind of job embedq runs, declared once.

Each entry names the kind's Celery task, the function that validates its
request (run by the client before queueing and by the worker on every
message), its size for routing, whether small jobs take the interactive
lane, the reader of its output, its time limits and attempts, and how a
large request splits into chunk jobs. The client, the
worker's dispatch and the sweeper all look kinds up here.

Adding a kind: an entry here, a request schema, a runner in ``worker/runners``,
a pure core in ``tasks/``, tests (docs/architecture.md walks through it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from api_client import results
from api_client.errors import BadRequest
from api_client.routing import Thresholds, route
from api_client.schemas import JobInfo, Limits, parse_encode_request
from api_client.schemas_classifiers import (
    parse_classify_request,
    parse_fine_tune_request,
    parse_train_request,
    parse_triage_request,
)
from api_client.schemas_collections import (
    parse_build_request,
    parse_delete_request,
    parse_reindex_request,
    parse_search_request,
    parse_upsert_request,
)
from api_client.schemas_similarity import parse_paraphrases_request, parse_similarity_request
from api_client.states import JobKind
from api_client.store.jobs import Chunk, split_list


def split_reindex(conn: psycopg.Connection, request: dict[str, Any], size: int) -> list[Chunk] | None:
    """Chunks of ``size`` documents in id order: each re-embeds its range with the new model."""
    from api_client.store.collections import chunk_starts, describe

    collection = describe(conn=conn, name=request["collection"])
    starts = chunk_starts(conn=conn, collection_id=collection["id"], size=size)
    if len(starts) < 2:
        return None
    bounds = [*starts[1:], None]
    return [
        Chunk({**request, "id_from": start, "id_to": stop}, min(size, collection["size"] - i * size), i * size)
        for i, (start, stop) in enumerate(zip(starts, bounds, strict=True))
    ]


TRAINING_TIME_LIMITS = (3600, 3720)
"""(soft, hard) seconds of one training or fine-tuning task: SetFit on Banking77 at 8 examples per class
takes about 200 s on 2 CPU cores; a task past the soft limit stops between steps and is retried."""


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
    lane: Literal["size", "interactive", "batch"] = "size"
    """``size``: small jobs go to the interactive lane, large ones to batch; else always that lane."""
    split: Callable[[psycopg.Connection, dict[str, Any], int], list[Chunk] | None] | None = None
    """The chunk jobs of a large request (given the chunk size), or ``None`` to run it whole."""
    finalize: bool = False
    """A chunked parent runs itself once its chunks succeeded (e.g. a reindex builds and swaps)."""
    time_limits: tuple[int, int] | None = None
    """(soft, hard) seconds of one task; ``None``: the settings' ``soft_time_limit`` / ``time_limit``."""
    max_attempts: int | None = None
    """Attempts before the job fails; ``None``: the settings' ``max_attempts``."""

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


KINDS: dict[JobKind, Kind] = {
    JobKind.ENCODE: Kind(
        kind=JobKind.ENCODE,
        task_name="embedq.encode",
        parse=parse_encode_request,
        text_fields=("texts",),
        read_result=results.read_vectors,
        output="encode_outputs JOIN embeddings USING (model_id, text_sha256), by item",
        split=lambda _conn, request, size: split_list(request, "texts", size),
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
    JobKind.UPSERT: Kind(
        kind=JobKind.UPSERT,
        task_name="embedq.upsert",
        parse=parse_upsert_request,
        text_fields=("texts",),
        read_result=results.read_summary,
        output="documents of the collection (the summary counts them)",
        split=lambda _conn, request, size: split_list(request, "documents", size),
    ),
    JobKind.DELETE: Kind(
        kind=JobKind.DELETE,
        task_name="embedq.delete",
        parse=parse_delete_request,
        text_fields=("ids",),
        read_result=results.read_summary,
        output="documents of the collection (the summary counts them)",
        lane="interactive",
    ),
    JobKind.BUILD_INDEX: Kind(
        kind=JobKind.BUILD_INDEX,
        task_name="embedq.build_index",
        parse=parse_build_request,
        text_fields=(),
        read_result=results.read_summary,
        output="index_versions (the summary names the version)",
        lane="batch",
    ),
    JobKind.SEARCH: Kind(
        kind=JobKind.SEARCH,
        task_name="embedq.search",
        parse=parse_search_request,
        text_fields=("queries",),
        read_result=results.read_hits,
        output="search_results: hits (jsonb) by item (query)",
        lane="interactive",
    ),
    JobKind.REINDEX: Kind(
        kind=JobKind.REINDEX,
        task_name="embedq.reindex",
        parse=parse_reindex_request,
        text_fields=(),
        read_result=results.read_summary,
        output="index_versions and collections (the summary names the new version and its gate)",
        lane="batch",
        split=split_reindex,
        finalize=True,
    ),
    JobKind.TRAIN_CLASSIFIER: Kind(
        kind=JobKind.TRAIN_CLASSIFIER,
        task_name="embedq.train_classifier",
        parse=parse_train_request,
        text_fields=("texts",),
        read_result=results.read_summary,
        output="classifier_versions (the summary is the report and names the version)",
        lane="batch",
        time_limits=TRAINING_TIME_LIMITS,
    ),
    JobKind.CLASSIFY: Kind(
        kind=JobKind.CLASSIFY,
        task_name="embedq.classify",
        parse=parse_classify_request,
        text_fields=("texts",),
        read_result=results.read_predictions,
        output="item_results: one prediction (jsonb) by item (text)",
    ),
    JobKind.TRIAGE: Kind(
        kind=JobKind.TRIAGE,
        task_name="embedq.triage",
        parse=parse_triage_request,
        text_fields=("texts",),
        read_result=results.read_triage,
        output="item_results: {category, similar, duplicates} (jsonb) by item (text)",
        lane="interactive",
    ),
    JobKind.FINE_TUNE: Kind(
        kind=JobKind.FINE_TUNE,
        task_name="embedq.fine_tune",
        parse=parse_fine_tune_request,
        text_fields=(),
        read_result=results.read_summary,
        output="models (a registered version; the summary names it with its evaluation before and after)",
        lane="batch",
        time_limits=TRAINING_TIME_LIMITS,
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
