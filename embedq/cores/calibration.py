"""The calibration set behind fixed int8/uint8 ranges.

Ranges are computed once per (model version, dimension, normalize) from the
raw embeddings of these texts, stored in ``quantization_ranges`` and reused
by every later job, so int8 vectors of any two jobs are comparable.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np

from api_client.postprocess import calibration_ranges, truncate_and_normalize

PATH = Path(__file__).resolve().parent / "data" / "calibration.txt"


@cache
def texts() -> tuple[str, ...]:
    return tuple(line for line in PATH.read_text().splitlines() if line.strip())


@cache
def name() -> str:
    """Identifies the calibration set in the stored ranges."""
    return f"calibration.txt sha256:{hashlib.sha256(PATH.read_bytes()).hexdigest()[:16]} n={len(texts())}"


def ranges(raw: np.ndarray, *, truncate_dim: int | None, normalize: bool) -> np.ndarray:
    """``[2, dim]`` minimums and maximums of the calibration vectors after truncation and normalization."""
    return calibration_ranges(truncate_and_normalize(raw, truncate_dim=truncate_dim, normalize=normalize))
