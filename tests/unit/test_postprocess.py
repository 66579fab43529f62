from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers.util import quantize_embeddings

from api_client.postprocess import calibration_ranges, quantize, truncate_and_normalize

RNG = np.random.default_rng(0)
VECTORS = RNG.normal(0, 0.05, size=(64, 384)).astype(np.float32)
CALIBRATION = RNG.normal(0, 0.05, size=(500, 384)).astype(np.float32)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_quantize_matches_sentence_transformers_with_the_same_ranges(precision: str) -> None:
    ranges = calibration_ranges(CALIBRATION)
    ours = quantize(VECTORS, precision, ranges)
    theirs = quantize_embeddings(VECTORS, precision=precision, ranges=ranges)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_values_outside_the_ranges_clip_to_the_end_buckets() -> None:
    ranges = np.array([[-0.1, -0.1], [0.1, 0.1]], dtype=np.float32)
    out = quantize(np.array([[-5.0, 5.0]], dtype=np.float32), "int8", ranges)
    assert out.tolist() == [[-128, 127]]


def test_int8_needs_ranges() -> None:
    with pytest.raises(ValueError, match="needs calibration ranges"):
        quantize(VECTORS, "int8")


def test_truncate_then_normalize_as_sentence_transformers_does() -> None:
    ours = truncate_and_normalize(VECTORS, truncate_dim=128, normalize=True)
    theirs = torch.nn.functional.normalize(torch.from_numpy(VECTORS[:, :128]), p=2, dim=1).numpy()
    assert ours.shape == (64, 128)
    np.testing.assert_allclose(ours, theirs, atol=1e-7)
    np.testing.assert_array_equal(truncate_and_normalize(VECTORS, truncate_dim=None, normalize=False), VECTORS)
