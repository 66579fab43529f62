"""The search runner: the hits of ``embedq.worker.searching.search``, written by query with the final state."""

from __future__ import annotations

from api_client.kinds.collections import SearchRequest
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime
from embedq.worker.searching import search
from embedq.worker.store import collections as collections_store
from embedq.worker.store.jobs import Claim


@runs("search")
def run_search(rt: Runtime, claim: Claim, request: SearchRequest) -> Outcome:
    hits, summary = search(rt, request)
    return Outcome(
        summary,
        write=lambda conn: collections_store.write_hits(conn=conn, job_id=claim.job_id, hits=hits),
        total=len(request.queries),
    )
