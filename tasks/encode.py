"""The encode core: texts in, raw model outputs out, batch by batch.

Texts are sorted longest first and cut into batches exactly as
``SentenceTransformer.encode`` does, so a job over the same texts with the
same batch size runs the same forward passes as a direct call and returns the
same floats. Post-processing (truncate, normalize, quantize) happens later,
on read (``api_client.postprocess``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays of each batch, in the order ``SentenceTransformer.encode`` runs them."""
    order = np.argsort([-len(text) for text in texts])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def iter_encode(
    model: Any, texts: Sequence[str], *, batch_size: int, prompt: str | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, raw float32 vectors)`` per batch; the caller may stop between batches."""
    for indices in batches(texts, batch_size):
        vectors = model.encode(
            [texts[i] for i in indices],
            batch_size=len(indices),
            prompt=prompt,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        yield indices, np.asarray(vectors, dtype=np.float32)


def encode(model: Any, texts: Sequence[str], *, batch_size: int, prompt: str | None = None) -> np.ndarray:
    """All raw vectors at once, in input order."""
    out: np.ndarray | None = None
    for indices, vectors in iter_encode(model, texts, batch_size=batch_size, prompt=prompt):
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
        out[indices] = vectors
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
