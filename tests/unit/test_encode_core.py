"""The encode core runs the same forward passes as SentenceTransformer.encode."""

from __future__ import annotations

import numpy as np

from embedq.cores.encode import batches, encode
from tests.helpers import banking_texts


def test_batches_follow_sentence_transformers_length_order() -> None:
    texts = ["a", "abcd", "ab", "abc", "abcde"]
    assert [list(b) for b in batches(texts, 2)] == [[4, 1], [3, 2], [0]]


def test_core_output_is_bit_identical_to_a_direct_call(st_model) -> None:
    texts = banking_texts(70)
    direct = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    ours = encode(st_model, texts, batch_size=16)
    np.testing.assert_array_equal(ours, direct)


def test_prompt_is_applied_like_the_library(st_model) -> None:
    texts = banking_texts(5)
    direct = st_model.encode(texts, prompt="query: ", convert_to_numpy=True)
    np.testing.assert_array_equal(encode(st_model, texts, batch_size=32, prompt="query: "), direct)
