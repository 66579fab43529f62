"""Vectors through the embedding cache: look texts up, encode only the misses, write them back.

Shared by every runner that needs vectors (encode, similarity, paraphrases,
cluster, upsert, reindex, the classifier kinds).
Encoded vectors go to the cache every ``flush_every`` texts, so a job retried
after a crash resumes where it stopped. Forward passes are capped by the
worker's token budget (``token_budget``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import psycopg

from api_client.cache_keys import text_sha256
from api_client.settings import Settings
from api_client.store import embeddings as embeddings_read
from embedq.cores.encode import TokenStats, iter_encode
from embedq.cores.models import LoadedModel
from embedq.worker.errors import time_limit
from embedq.worker.lease import Progress
from embedq.worker.runtime import Runtime
from embedq.worker.store import embeddings as embeddings_store

TOKEN_BUDGETS = {"cpu": 16_384, "gpu": 262_144}
"""Default token budget of a forward pass per hardware class (``EMBEDQ_TOKEN_BUDGET`` overrides).

CPU: 16,384 is the library's default batch (32 texts) at 512 tokens, so a
job at the default batch size is never split and keeps the library's floats
for models of up to 512 tokens; it bounds a batch of 1,024 long texts to 64.
Throughput alone would want less: all-MiniLM-L6-v2 on one thread (a busy
2-core machine) ran texts of 184 tokens on average at 11.6 texts/s with
1,024 padded tokens per batch against 9.8 with 16,384, and texts of 17
tokens at 82 against 57 with 8,192 (less padding and smaller activations).
GPU: a large batch of long texts in float16, well inside a GPU's memory; not
measured on a GPU.
"""


def token_budget(settings: Settings) -> int:
    """The worker's token budget: its setting, else its hardware class's default."""
    return settings.token_budget or TOKEN_BUDGETS[settings.hardware]


class Pending:
    """Vectors encoded but not yet in the cache."""

    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        self.keys: list[bytes] = []
        self.vectors: list[np.ndarray] = []

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.keys.extend(keys)
        self.vectors.append(vectors)

    def array(self) -> np.ndarray:
        """The vectors as one float32 array, in the order of ``keys`` (``[0, 0]`` when there are none)."""
        return np.concatenate(self.vectors) if self.vectors else np.zeros((0, 0), dtype=np.float32)

    def write(self, conn: psycopg.Connection, *, skip_existing: bool) -> None:
        """Copy them into the cache (inside the caller's transaction)."""
        if self.keys:
            embeddings_store.write_embeddings(
                conn=conn, model_id=self.model_id, keys=self.keys, vectors=self.array(), skip_existing=skip_existing
            )

    def clear(self) -> None:
        self.keys.clear()
        self.vectors.clear()


def write_once_more_on_conflict(conn: psycopg.Connection, body: Callable[[bool], None]) -> None:
    """Run ``body(skip_existing)`` in a transaction; once more with ``True`` if another worker cached a key first."""
    try:
        with conn.transaction():
            body(False)
    except psycopg.errors.UniqueViolation:
        with conn.transaction():
            body(True)


def encode_missing(
    rt: Runtime,
    *,
    model: LoadedModel,
    pending: Pending,
    texts: dict[bytes, str],
    batch_size: int,
    prompt: str | None,
    on_batch: Callable[[list[bytes]], None],
) -> TokenStats:
    """Encode the texts (by key) into ``pending``, flushing it to the cache every ``flush_every`` vectors.

    At the soft time limit what was encoded is flushed before the limit goes
    on up, so the retry of a job that made progress resumes after it.
    Returns the tokens and padding of the forward passes.
    """
    keys = list(texts)
    stats = TokenStats()
    batches = iter_encode(
        model.model,
        list(texts.values()),
        batch_size=batch_size,
        prompt=prompt,
        token_budget=token_budget(rt.settings),
        stats=stats,
    )
    try:
        for indices, vectors in batches:
            batch_keys = [keys[i] for i in indices]
            pending.add(batch_keys, vectors)
            if len(pending.keys) >= rt.settings.flush_every:
                flush(rt, pending)
            on_batch(batch_keys)
    except Exception as exc:
        if time_limit(exc) is not None:  # keep what was encoded: the retry resumes after it
            flush(rt, pending)
        raise
    return stats


def flush(rt: Runtime, pending: Pending) -> None:
    """Write the pending vectors to the cache in their own transaction."""
    write_once_more_on_conflict(rt.conn, lambda skip: pending.write(rt.conn, skip_existing=skip))
    pending.clear()


class Lookup:
    """The cache keys of a job's texts and which of them still need a forward pass."""

    def __init__(self, rt: Runtime, *, model_id: int, texts: Sequence[str], prompt: str | None) -> None:
        self.keys = [text_sha256(text, prompt) for text in texts]
        self.weights = Counter(self.keys)
        self.unique = dict(zip(self.keys, texts, strict=True))
        cached = embeddings_store.cached_keys(conn=rt.conn, model_id=model_id, keys=list(self.unique))
        self.missing = {key: text for key, text in self.unique.items() if key not in cached}
        self.stats = TokenStats()
        """Tokens and padding of the forward passes that encoded the misses (once they ran)."""

    @property
    def done(self) -> int:
        """Items whose vectors are already cached."""
        return len(self.keys) - sum(self.weights[key] for key in self.missing)


def ensure_cached(
    rt: Runtime,
    *,
    model: LoadedModel,
    model_id: int,
    texts: Sequence[str],
    batch_size: int,
    progress: Progress,
    prompt: str | None = None,
) -> Lookup:
    """Put the vectors of ``texts`` in the cache, encoding only what it lacks; returns their lookup."""
    lookup = Lookup(rt, model_id=model_id, texts=texts, prompt=prompt)
    progress.beat(lookup.done)
    pending = Pending(model_id)
    lookup.stats = encode_missing(
        rt,
        model=model,
        pending=pending,
        texts=lookup.missing,
        batch_size=batch_size,
        prompt=prompt,
        on_batch=lambda batch: progress.beat(progress.done + sum(lookup.weights[k] for k in batch)),
    )
    flush(rt, pending)
    return lookup


def cached_vectors(
    rt: Runtime,
    *,
    model: LoadedModel,
    model_id: int,
    texts: Sequence[str],
    batch_size: int,
    progress: Progress,
    prompt: str | None = None,
) -> tuple[np.ndarray, Lookup]:
    """The raw vectors of ``texts`` in input order, encoding only what the cache lacks."""
    lookup = ensure_cached(
        rt, model=model, model_id=model_id, texts=texts, batch_size=batch_size, progress=progress, prompt=prompt
    )
    unique = list(lookup.unique)
    vectors = embeddings_read.read_vectors(conn=rt.conn, model_id=model_id, keys=unique)
    position = {key: i for i, key in enumerate(unique)}
    return vectors[[position[key] for key in lookup.keys]], lookup
