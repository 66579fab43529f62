"""The cluster runner: the texts' vectors through the cache, communities by the pure core, stored as arrays."""

from __future__ import annotations

from api_client.kinds.cluster import ClusterRequest, flatten
from embedq.cores.cluster import communities
from embedq.worker.cache import cached_vectors
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime
from embedq.worker.store import arrays as arrays_store
from embedq.worker.store.jobs import Claim


@runs("cluster")
def run_cluster(rt: Runtime, claim: Claim, request: ClusterRequest) -> Outcome:
    model, model_id = rt.model(request.model, request.backend)
    progress = rt.progress(claim, total=len(request.texts), done=0)
    vectors, lookup = cached_vectors(
        rt, model=model, model_id=model_id, texts=request.texts, batch_size=request.batch_size, progress=progress
    )
    found = communities(vectors, threshold=request.threshold, min_size=request.min_size)
    summary = {
        "model": request.model,
        "model_id": model_id,
        "model_version": model.sha256[:12],
        "count": len(request.texts),
        "cached": len(lookup.unique) - len(lookup.missing),
        "encoded": len(lookup.missing),
        "threshold": request.threshold,
        "min_size": request.min_size,
        "clusters": len(found),
        "clustered": sum(len(cluster) for cluster in found),
        "largest": len(found[0]) if found else 0,
    }
    arrays = flatten(found)
    return Outcome(
        summary,
        write=lambda conn: arrays_store.write_arrays(conn=conn, job_id=claim.job_id, arrays=arrays),
        total=len(request.texts),
    )
