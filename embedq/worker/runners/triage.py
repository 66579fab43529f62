"""The triage runner: for each new ticket its category, the most similar past documents, likely duplicates.

One job does what a support desk asks of a new ticket: the classifier's
prediction (with its abstention), a search of the collection, and the hits
scoring at least ``duplicate_threshold`` as likely duplicates, stored by item.
"""

from __future__ import annotations

from typing import Any

from api_client.kinds.classifiers import TriageRequest
from api_client.requests import Limits
from embedq.worker.classifier_heads import classify
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime
from embedq.worker.searching import search
from embedq.worker.store import items as items_store
from embedq.worker.store.jobs import Claim


@runs("triage")
def run_triage(rt: Runtime, claim: Claim, request: TriageRequest) -> Outcome:
    predictions, version = classify(rt, claim, request)
    hits, searched = search(rt, request.search_request(Limits.of(rt.settings)))
    records: list[dict[str, Any]] = [
        {
            "category": prediction,
            "similar": similar,
            "duplicates": [hit for hit in similar if hit["score"] >= request.duplicate_threshold],
        }
        for prediction, similar in zip(predictions, hits, strict=True)
    ]
    summary = {
        "classifier": version.name,
        "version": version.version,
        "collection": request.collection,
        "index_version": searched["index_version"],
        "texts": len(records),
        "abstained": sum(1 for record in records if record["category"]["abstained"]),
        "duplicates": sum(1 for record in records if record["duplicates"]),
    }
    return Outcome(
        summary,
        write=lambda conn: items_store.write_items(conn=conn, job_id=claim.job_id, outputs=records),
        total=len(records),
    )
