"""Running a triage job: for each new ticket its category, the most similar past documents, likely duplicates.

One job does what a support desk asks of a new ticket: the classifier's
prediction (with its abstention), a search of the collection, and the hits
scoring at least ``duplicate_threshold`` as likely duplicates. The records are
stored by item with the job's success in one transaction.
"""

from __future__ import annotations

from typing import Any

from api_client.schemas import Limits
from api_client.schemas_classifiers import ClassifyRequest, parse_triage_request
from api_client.schemas_collections import SearchRequest
from embedq.worker.cache import commit
from embedq.worker.classifier_jobs import classify
from embedq.worker.lease import finish
from embedq.worker.runtime import Runtime
from embedq.worker.searching import search
from embedq.worker.store import items as items_store
from embedq.worker.store.jobs import Claim


def run_triage(rt: Runtime, claim: Claim) -> dict[str, Any]:
    request = parse_triage_request(claim.request, Limits.of(rt.settings))
    predictions, version = classify(
        rt,
        claim,
        ClassifyRequest.model_construct(
            name=request.name,
            texts=request.texts,
            top_k=request.top_k,
            version=request.version,
            batch_size=request.batch_size,
        ),
    )
    search_request = SearchRequest.model_validate(
        {"collection": request.collection, "queries": request.texts, "k": request.k, "batch_size": request.batch_size}
    )
    hits, searched = search(rt, search_request)
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

    def write(_skip_existing: bool) -> None:
        items_store.write_items(conn=rt.conn, job_id=claim.job_id, outputs=records)
        finish(rt.conn, claim, summary, len(records))

    commit(rt.conn, write)
    return summary
