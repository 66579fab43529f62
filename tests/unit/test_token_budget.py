"""Token-budget batching and out-of-memory halving in the encode core."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from embedq.cores.encode import TokenStats, encode, fit_budget, halving, iter_encode
from embedq.cores.memory import is_out_of_memory
from tests.helpers import banking_texts

LONG = (
    "My card payment was declined twice at the same shop although my balance is fine, the app shows "
    "the money as pending, and the support chat keeps closing before anyone answers, so I would like "
    "to know what is going on with my account and whether I should order a new card. "
)


def long_texts(n: int) -> list[str]:
    """Texts of 60 to 250 tokens, all different."""
    return [f"{i}: " + LONG * (1 + i % 4) for i in range(n)]


def padded(lengths: list[int], run: slice) -> int:
    part = lengths[run]
    return len(part) * max(part)


def test_without_a_budget_or_within_it_a_batch_is_one_run() -> None:
    assert fit_budget([9, 7, 7, 3], None) == [slice(0, 4)]
    assert fit_budget([9, 7, 7, 3], 36) == [slice(0, 4)]


def test_a_batch_over_the_budget_is_cut_into_consecutive_runs_that_fit() -> None:
    lengths = [40, 38, 30, 30, 12, 12, 12, 5]
    runs = fit_budget(lengths, 80)
    assert runs == [slice(0, 2), slice(2, 4), slice(4, 8)]
    assert all(padded(lengths, run) <= 80 for run in runs)


def test_a_text_longer_than_the_budget_runs_alone() -> None:
    assert fit_budget([300, 20, 20], 100) == [slice(0, 1), slice(1, 3)]


def test_the_longest_text_of_a_run_sets_its_padding_even_when_it_comes_later() -> None:
    # Character order is not token order: a later text may have more tokens.
    assert fit_budget([10, 10, 30], 60) == [slice(0, 2), slice(2, 3)]


def oom(size: int) -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} MiB")


def test_a_run_that_runs_out_of_memory_is_halved_until_it_fits() -> None:
    calls: list[int] = []

    def forward(indices: np.ndarray) -> list[int]:
        calls.append(len(indices))
        if len(indices) > 3:
            raise oom(len(indices))
        return [int(i) * 10 for i in indices]

    splits: list[None] = []
    out = list(halving(np.arange(10), forward, on_split=lambda: splits.append(None)))
    assert [list(idx) for idx, _ in out] == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
    assert [v for _, values in out for v in values] == [i * 10 for i in range(10)]
    assert calls == [10, 5, 2, 3, 5, 2, 3]
    assert len(splits) == 3


def test_one_text_that_runs_out_of_memory_fails() -> None:
    def forward(indices: np.ndarray) -> None:
        raise oom(len(indices))

    with pytest.raises(torch.OutOfMemoryError):
        list(halving(np.arange(4), forward))


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def forward(indices: np.ndarray) -> None:
        calls.append(len(indices))
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        list(halving(np.arange(4), forward))
    assert calls == [4]


def test_allocation_failures_of_torch_and_onnxruntime_count_as_out_of_memory() -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    assert is_out_of_memory(oom(20))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(
        RuntimeException(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running MatMul "
            "node. Name:'/0/auto_model/encoder/layer.0/attention/self/MatMul' Status Message: "
            "/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:359 void* "
            "onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) "
            "Failed to allocate memory for requested buffer of size 402653184"
        )
    )
    assert is_out_of_memory(RuntimeException("std::bad_alloc"))
    assert not is_out_of_memory(RuntimeError("expected scalar type Float but found Half"))
    assert not is_out_of_memory(ValueError("texts: empty"))


def test_a_budget_that_does_not_bind_keeps_the_librarys_floats(st_model) -> None:
    texts = banking_texts(24)
    direct = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    np.testing.assert_array_equal(encode(st_model, texts, batch_size=16, token_budget=16 * 256), direct)


def test_a_tiny_budget_runs_small_batches_with_the_same_vectors(st_model) -> None:
    texts = long_texts(6)
    direct = st_model.encode(texts, batch_size=6, convert_to_numpy=True)
    stats = TokenStats()
    out = np.empty_like(direct)
    sizes = []
    for indices, vectors in iter_encode(st_model, texts, batch_size=6, prompt=None, token_budget=300, stats=stats):
        out[indices] = vectors
        sizes.append(len(indices))
    assert max(sizes) <= 2 < len(sizes)  # texts of over 150 tokens: at most two per 300 tokens
    assert stats.batches == len(sizes) and stats.splits == len(sizes) - 1
    assert stats.padded <= 300 * len(sizes)
    np.testing.assert_allclose(out, direct, atol=1e-5)


def test_padding_waste_is_counted_from_the_attention_masks(st_model) -> None:
    texts = ["hi", "hello there", LONG]
    lengths = [len(ids) for ids in st_model.tokenizer(texts)["input_ids"]]
    stats = TokenStats()
    list(iter_encode(st_model, texts, batch_size=3, prompt=None, stats=stats))
    assert stats.tokens == sum(lengths)
    assert stats.padded == 3 * max(lengths)
    assert stats.summary()["padding_waste"] == round(1 - sum(lengths) / (3 * max(lengths)), 4) > 0.5


class FlakyForward:
    """The model with a forward pass that runs out of memory above ``max_batch`` texts (a test double)."""

    def __init__(self, model: Any, max_batch: int) -> None:
        self.model = model
        self.max_batch = max_batch
        self.device = model.device
        self.sizes: list[int] = []

    def preprocess(self, texts: list[str], prompt: str | None = None) -> dict[str, Any]:
        return self.model.preprocess(texts, prompt=prompt)

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        size = features["input_ids"].shape[0]
        self.sizes.append(size)
        if size > self.max_batch:
            raise oom(size)
        return self.model(features)


def test_a_job_whose_forward_runs_out_of_memory_still_encodes_everything(st_model) -> None:
    texts = banking_texts(20)
    flaky = FlakyForward(st_model, max_batch=3)
    stats = TokenStats()
    out = np.empty((20, 384), dtype=np.float32)
    for indices, vectors in iter_encode(flaky, texts, batch_size=16, prompt=None, stats=stats):
        out[indices] = vectors
    direct = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    np.testing.assert_allclose(out, direct, atol=1e-5)
    assert flaky.sizes[:4] == [16, 8, 4, 2]  # halved until the forward fits
    assert stats.batches == 10 and stats.splits == 8  # batches of 16 and 4 texts, run two at a time
