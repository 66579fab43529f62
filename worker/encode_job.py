"""Running one claimed encode job: cache lookup, encoding of the misses, outputs.

Vectors go to the content-keyed cache every ``flush_every`` texts, so a job
that is retried after a crash resumes where it stopped. The last vectors,
the outputs and the final state are written in one transaction, fenced by
the claim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg

from api_client.schemas import Limits, parse_encode_request
from api_client.store import embeddings as embeddings_store
from api_client.store import jobs as jobs_store
from api_client.store import models as models_store
from api_client.store.jobs import Claim
from api_client.texts import text_sha256
from tasks import calibration
from tasks.encode import iter_encode
from tasks.models import LoadedModel
from worker.lease import JobStopped, Progress
from worker.runtime import Runtime


class Pending:
    """Vectors encoded but not yet in the cache."""

    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        self.keys: list[bytes] = []
        self.vectors: list[np.ndarray] = []

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.keys.extend(keys)
        self.vectors.append(vectors)

    def write(self, conn: psycopg.Connection, *, skip_existing: bool) -> None:
        """Copy them into the cache (inside the caller's transaction)."""
        if self.keys:
            embeddings_store.write_embeddings(
                conn=conn,
                model_id=self.model_id,
                keys=self.keys,
                vectors=np.concatenate(self.vectors),
                skip_existing=skip_existing,
            )

    def clear(self) -> None:
        self.keys.clear()
        self.vectors.clear()


def commit(conn: psycopg.Connection, body: Callable[[bool], None]) -> None:
    """Run ``body(skip_existing)`` in a transaction; once more with ``True`` if another worker cached a key first."""
    try:
        with conn.transaction():
            body(False)
    except psycopg.errors.UniqueViolation:
        with conn.transaction():
            body(True)


def _encode_missing(
    rt: Runtime,
    *,
    model: LoadedModel,
    pending: Pending,
    texts: dict[bytes, str],
    batch_size: int,
    prompt: str | None,
    on_batch: Callable[[list[bytes]], None],
) -> None:
    """Encode the texts (by key) into ``pending``, flushing it to the cache every ``flush_every`` vectors."""
    keys = list(texts)
    for indices, vectors in iter_encode(model.model, list(texts.values()), batch_size=batch_size, prompt=prompt):
        batch_keys = [keys[i] for i in indices]
        pending.add(batch_keys, vectors)
        if len(pending.keys) >= rt.settings.flush_every:
            commit(rt.conn, lambda skip: pending.write(rt.conn, skip_existing=skip))
            pending.clear()
        on_batch(batch_keys)


def _ensure_ranges(
    rt: Runtime, model: LoadedModel, model_id: int, *, truncate_dim: int | None, normalize: bool, progress: Progress
) -> None:
    """Compute and store int8 ranges for this model version, dimension and normalization, once."""
    dimension = truncate_dim or model.dimension
    if models_store.get_ranges(conn=rt.conn, model_id=model_id, dimension=dimension, normalized=normalize) is not None:
        return
    texts = {text_sha256(text): text for text in calibration.texts()}
    cached = embeddings_store.cached_keys(conn=rt.conn, model_id=model_id, keys=list(texts))
    pending = Pending(model_id)
    _encode_missing(
        rt,
        model=model,
        pending=pending,
        texts={k: v for k, v in texts.items() if k not in cached},
        batch_size=32,
        prompt=None,
        on_batch=lambda _keys: progress.beat(progress.done),
    )
    commit(rt.conn, lambda skip: pending.write(rt.conn, skip_existing=skip))
    raw = embeddings_store.read_vectors(conn=rt.conn, model_id=model_id, keys=list(texts))
    models_store.put_ranges(
        conn=rt.conn,
        model_id=model_id,
        dimension=dimension,
        normalized=normalize,
        ranges=calibration.ranges(raw, truncate_dim=truncate_dim, normalize=normalize),
        calibration=calibration.name(),
    )


def run_encode(rt: Runtime, claim: Claim) -> dict[str, Any]:
    """Run the job to its end; returns the result summary stored in ``jobs.result``."""
    request = parse_encode_request(claim.request, Limits.of(rt.settings))
    model, model_id = rt.model(request.model)
    model.check_truncate_dim(request.truncate_dim)
    prompt = model.resolve_prompt(request.prompt, request.prompt_name)
    total = len(request.texts)
    keys = [text_sha256(text, prompt) for text in request.texts]
    weights = Counter(keys)
    unique = dict(zip(keys, request.texts, strict=True))
    cached = embeddings_store.cached_keys(conn=rt.conn, model_id=model_id, keys=list(unique))
    missing = {key: text for key, text in unique.items() if key not in cached}

    progress = Progress(
        conn=rt.conn,
        claim=claim,
        total=total,
        done=total - sum(weights[key] for key in missing),
        lease_seconds=rt.settings.lease_seconds,
        interval=rt.settings.progress_interval,
    )
    pending = Pending(model_id)
    _encode_missing(
        rt,
        model=model,
        pending=pending,
        texts=missing,
        batch_size=request.batch_size,
        prompt=prompt,
        on_batch=lambda batch: progress.beat(progress.done + sum(weights[k] for k in batch)),
    )
    dimension = request.truncate_dim or model.dimension
    if request.precision in ("int8", "uint8"):
        _ensure_ranges(
            rt, model, model_id, truncate_dim=request.truncate_dim, normalize=request.normalize, progress=progress
        )
    summary = {
        "model": request.model,
        "model_id": model_id,
        "model_version": model.sha256[:12],
        "count": total,
        "unique": len(unique),
        "dimension": dimension,
        "cached": len(unique) - len(missing),
        "encoded": len(missing),
        "normalize": request.normalize,
        "truncate_dim": request.truncate_dim,
        "precision": request.precision,
        "prompt": prompt,
    }

    def finish(skip_existing: bool) -> None:
        pending.write(rt.conn, skip_existing=skip_existing)
        embeddings_store.write_outputs(conn=rt.conn, job_id=claim.job_id, model_id=model_id, keys=keys)
        if not jobs_store.finish_job(conn=rt.conn, claim=claim, result=summary, total=total):
            raise JobStopped(claim.job_id, jobs_store.get_job(conn=rt.conn, job_id=claim.job_id).status)

    commit(rt.conn, finish)
    return summary
