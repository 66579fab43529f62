"""Post-processing of raw model outputs, in the order sentence-transformers uses.

The embedding cache holds each text's raw model output (float32, full
dimension). A job's vectors are derived from it here: truncate to
``truncate_dim``, then L2-normalize, then quantize. Pure numpy, so the client
applies it when it reads a result and the worker when it calibrates.

int8/uint8 use fixed per-dimension ranges stored per model version (see
``quantization_ranges``), not ranges computed from each call's own vectors,
so int8 vectors from any two jobs of one model version are comparable.
"""

from __future__ import annotations

import numpy as np

NORM_EPS = 1e-12


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), in ``vectors``' own float dtype: the one L2 normalization."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), NORM_EPS)


def truncate_and_normalize(raw: np.ndarray, *, truncate_dim: int | None, normalize: bool) -> np.ndarray:
    """Float32 vectors as ``SentenceTransformer.encode`` returns them before quantization."""
    vectors = raw[:, :truncate_dim] if truncate_dim is not None else raw
    vectors = np.asarray(vectors, dtype=np.float32)
    if normalize:
        vectors = unit(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def calibration_ranges(vectors: np.ndarray) -> np.ndarray:
    """``[2, dim]``: per-dimension minimum and maximum over a calibration set."""
    return np.vstack((vectors.min(axis=0), vectors.max(axis=0))).astype(np.float32)


def quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantize float32 vectors exactly as ``sentence_transformers.quantize_embeddings`` does with ``ranges``.

    Values outside the ranges are clipped to the end buckets.
    """
    if precision == "float32":
        return vectors
    if precision in ("int8", "uint8"):
        if ranges is None:
            raise ValueError(f"{precision} quantization needs calibration ranges")
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((vectors - starts) / steps), 0, 255)
        return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
    if precision == "binary":
        return (np.packbits(vectors > 0, axis=-1).reshape(vectors.shape[0], -1) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(vectors > 0, axis=-1).reshape(vectors.shape[0], -1)
    raise ValueError(f"unknown precision {precision!r}")
