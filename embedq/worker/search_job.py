"""Running a search job: the hits of ``embedq.worker.searching.search``, stored by query."""

from __future__ import annotations

from typing import Any

from api_client.schemas import Limits
from api_client.schemas_collections import parse_search_request
from embedq.worker.cache import commit
from embedq.worker.lease import finish
from embedq.worker.runtime import Runtime
from embedq.worker.searching import search
from embedq.worker.store import collections as collections_store
from embedq.worker.store.jobs import Claim


def run_search(rt: Runtime, claim: Claim) -> dict[str, Any]:
    request = parse_search_request(claim.request, Limits.of(rt.settings))
    hits, summary = search(rt, request)

    def write(_skip_existing: bool) -> None:
        collections_store.write_hits(conn=rt.conn, job_id=claim.job_id, hits=hits)
        finish(rt.conn, claim, summary, len(request.queries))

    commit(rt.conn, write)
    return summary
