"""The encode core: texts in, raw model outputs out, batch by batch.

Texts are sorted longest first and cut into batches exactly as
``SentenceTransformer.encode`` does, and each batch takes the same two steps
that ``encode`` takes (``model.preprocess``, then the forward pass), so a job
over the same texts with the same batch size returns the same floats as a
direct call. ``encode``'s per-call set-up (moving the model to its device,
``eval()``) is done once at load instead. Post-processing (truncate,
normalize, quantize) happens later, on read (``api_client.postprocess``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers.util import batch_to_device


def batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays of each batch, in the order ``SentenceTransformer.encode`` runs them."""
    order = np.argsort([-len(text) for text in texts])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def forward(model: Any, texts: list[str], prompt: str | None) -> np.ndarray:
    """One batch: tokenize (with the prompt), run the model, return float32 sentence embeddings."""
    with torch.inference_mode():
        features = batch_to_device(model.preprocess(texts, prompt=prompt), model.device)
        embeddings = model(features)["sentence_embedding"]
        return embeddings.float().cpu().numpy()


def iter_encode(
    model: Any, texts: Sequence[str], *, batch_size: int, prompt: str | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, raw float32 vectors)`` per batch; the caller may stop between batches."""
    for indices in batches(texts, batch_size):
        yield indices, forward(model, [texts[i] for i in indices], prompt)


def encode(model: Any, texts: Sequence[str], *, batch_size: int, prompt: str | None = None) -> np.ndarray:
    """All raw vectors at once, in input order."""
    out: np.ndarray | None = None
    for indices, vectors in iter_encode(model, texts, batch_size=batch_size, prompt=prompt):
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
        out[indices] = vectors
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
