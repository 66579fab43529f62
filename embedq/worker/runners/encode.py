"""The encode runner: cache lookup, encoding of the misses, then the outputs to write with the final state.

The last vectors and the outputs are one statement
(``write_encode_outputs``), written by the finishing transaction with the
job's final state. A whole job whose vectors are all in hand and small
announces them with its row (the outcome's ``notice``), so its waiting
client need not read them back. A chunk writes its outputs into its parent's
rows at its ``item_offset``; its parent is finished with its last chunk.
"""

from __future__ import annotations

import base64

import numpy as np
import psycopg

from api_client.cache_keys import text_sha256
from api_client.kinds.encode import EncodeRequest
from api_client.store import embeddings as embeddings_read
from api_client.store import models as models_read
from embedq.cores import calibration
from embedq.cores.models import LoadedModel
from embedq.worker.cache import Lookup, Pending, encode_missing, flush
from embedq.worker.lease import Progress
from embedq.worker.runners import Outcome, runs
from embedq.worker.runtime import Runtime
from embedq.worker.store import embeddings as embeddings_store
from embedq.worker.store import jobs as jobs_store
from embedq.worker.store import models as models_store
from embedq.worker.store.jobs import Claim

INLINE_VECTORS = 32
"""New vectors written by the job's finishing statement itself; more go first to the cache by binary COPY."""

NOTICE_BYTES = 4096
"""Raw vectors sent with the result notification (two of 384 dimensions; base64 adds a third)."""


def _ensure_ranges(
    rt: Runtime, model: LoadedModel, model_id: int, *, truncate_dim: int | None, normalize: bool, progress: Progress
) -> None:
    """Compute and store int8 ranges for this model version, dimension and normalization, once."""
    dimension = truncate_dim or model.dimension
    if models_read.get_ranges(conn=rt.conn, model_id=model_id, dimension=dimension, normalized=normalize) is not None:
        return
    texts = {text_sha256(text): text for text in calibration.texts()}
    cached = embeddings_store.cached_keys(conn=rt.conn, model_id=model_id, keys=list(texts))
    pending = Pending(model_id)
    encode_missing(
        rt,
        model=model,
        pending=pending,
        texts={k: v for k, v in texts.items() if k not in cached},
        batch_size=32,
        prompt=None,
        on_batch=lambda _keys: progress.beat(progress.done),
    )
    flush(rt, pending)
    raw = embeddings_read.read_vectors(conn=rt.conn, model_id=model_id, keys=list(texts))
    models_store.put_ranges(
        conn=rt.conn,
        model_id=model_id,
        dimension=dimension,
        normalized=normalize,
        ranges=calibration.ranges(raw, truncate_dim=truncate_dim, normalize=normalize),
        calibration=calibration.name(),
    )


@runs("encode")
def run_encode(rt: Runtime, claim: Claim, request: EncodeRequest) -> Outcome:
    """Encode what the cache lacks; the outcome writes the vectors and outputs."""
    model, model_id = rt.job_model(claim, request.model, request.backend)
    model.check_truncate_dim(request.truncate_dim)
    prompt = model.resolve_prompt(request.prompt, request.prompt_name)
    total = len(request.texts)
    lookup = Lookup(rt, model_id=model_id, texts=request.texts, prompt=prompt)
    progress = rt.progress(claim, total=total, done=lookup.done)
    pending = Pending(model_id)
    stats = encode_missing(
        rt,
        model=model,
        pending=pending,
        texts=lookup.missing,
        batch_size=request.batch_size,
        prompt=prompt,
        on_batch=lambda batch: progress.beat(progress.done + sum(lookup.weights[k] for k in batch)),
    )
    if request.precision in ("int8", "uint8"):
        _ensure_ranges(
            rt, model, model_id, truncate_dim=request.truncate_dim, normalize=request.normalize, progress=progress
        )
    summary = {
        "model": request.model,
        "model_id": model_id,
        "model_version": model.sha256[:12],
        "backend": model.backend,
        "count": total,
        "unique": len(lookup.unique),
        "dimension": request.truncate_dim or model.dimension,
        "cached": len(lookup.unique) - len(lookup.missing),
        "encoded": len(lookup.missing),
        "normalize": request.normalize,
        "truncate_dim": request.truncate_dim,
        "precision": request.precision,
        "prompt": prompt,
        **stats.summary(),
    }
    if len(pending.keys) > INLINE_VECTORS:
        flush(rt, pending)
    keys, new_keys, new_vectors = lookup.keys, list(pending.keys), pending.array()

    def write(conn: psycopg.Connection) -> None:
        jobs_store.write_encode_outputs(
            conn=conn, claim=claim, model_id=model_id, keys=keys, new_keys=new_keys, new_vectors=new_vectors
        )

    return Outcome(summary, write=write, total=total, notice=_notice(claim, keys, pending))


def _notice(claim: Claim, keys: list[bytes], pending: Pending) -> tuple[int, str] | None:
    """The items' dimension and raw vectors (base64) for the result notification, when all are in hand and small."""
    encoded = dict(zip(pending.keys, pending.array(), strict=True))
    if claim.parent_id is not None or not keys or any(key not in encoded for key in keys):
        return None
    raw = np.stack([encoded[key] for key in keys]).astype("<f4")
    return (raw.shape[1], base64.b64encode(raw.tobytes()).decode()) if raw.nbytes <= NOTICE_BYTES else None
