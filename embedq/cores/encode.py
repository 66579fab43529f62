"""The encode core: texts in, raw model outputs out, batch by batch.

Texts are sorted longest first and cut into batches exactly as
``SentenceTransformer.encode`` does, and each batch takes the same two steps
that ``encode`` takes (``model.preprocess``, then the forward pass).
``encode``'s per-call set-up (moving the model to its device, ``eval()``) is
done once at load instead. Post-processing (truncate, normalize, quantize)
happens later, on read (``api_client.postprocess``).

Two things may cut one of ``encode``'s batches into smaller runs, and only
cut, never merge or reorder:

- a **token budget**: a batch whose padded size (texts times its longest
  text's tokens, counted from the tokenizer's own attention mask, so the
  count costs nothing beyond the tokenization ``encode`` does anyway) is over
  the budget is split into consecutive runs that fit;
- **running out of memory**: a run that fails with an out-of-memory error is
  halved and each half retried, down to single texts.

The promise: every batch that fits the budget and the memory is run exactly
as ``encode`` runs it, so a job whose batches all fit returns the same floats
as a direct ``encode`` call with the same batch size. A split batch gives
vectors equal to ``encode``'s to float rounding (different padding), as
``encode`` with a smaller batch size would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from sentence_transformers.util import batch_to_device

from embedq.cores.memory import is_out_of_memory

T = TypeVar("T")


@dataclass
class TokenStats:
    """Tokens through the model: real ones, and with the padding each batch added (from the attention masks)."""

    tokens: int = 0
    padded: int = 0
    batches: int = 0
    splits: int = 0
    """Batches cut by the token budget or halved after running out of memory."""

    @property
    def waste(self) -> float:
        """The fraction of the model's input that was padding."""
        return 1 - self.tokens / self.padded if self.padded else 0.0

    def add(self, features: dict[str, Any]) -> None:
        mask = features.get("attention_mask")
        self.batches += 1
        if mask is not None:
            self.tokens += int(mask.sum())
            self.padded += int(mask.numel())

    def summary(self) -> dict[str, Any]:
        """The figures a job's result summary reports."""
        return {
            "tokens": self.tokens,
            "padded_tokens": self.padded,
            "padding_waste": round(self.waste, 4),
            "batches": self.batches,
            "batch_splits": self.splits,
        }


def batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays of each batch, in the order ``SentenceTransformer.encode`` runs them."""
    order = np.argsort([-len(text) for text in texts])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def fit_budget(lengths: Sequence[int], token_budget: int | None) -> list[slice]:
    """Cut a batch (its texts' token counts, in run order) into consecutive runs of padded size within the budget.

    A run's padded size is its length times its longest text's count, as the
    tokenizer pads it. A single text over the budget is a run of its own.
    Without a budget, or when the whole batch fits, the batch is one run.
    """
    runs: list[slice] = []
    start, longest = 0, 0
    for i, length in enumerate(lengths):
        if token_budget and i > start and (i - start + 1) * max(longest, length) > token_budget:
            runs.append(slice(start, i))
            start, longest = i, 0
        longest = max(longest, length)
    runs.append(slice(start, len(lengths)))
    return runs


def halving(
    indices: np.ndarray, run: Callable[[np.ndarray], T], *, on_split: Callable[[], None] | None = None
) -> Iterator[tuple[np.ndarray, T]]:
    """``(indices, run(indices))``, or, if that runs out of memory, the same for each half, recursively.

    A single text that runs out of memory raises the error. Other errors are
    never retried.
    """
    try:
        result = run(indices)
    except Exception as exc:
        if len(indices) < 2 or not is_out_of_memory(exc):
            raise
        failed = True  # recurse outside the handler, so the traceback's tensors can be freed first
    else:
        failed = False
    if not failed:
        yield indices, result
        return
    _release_cached_memory()
    if on_split is not None:
        on_split()
    middle = len(indices) // 2
    yield from halving(indices[:middle], run, on_split=on_split)
    yield from halving(indices[middle:], run, on_split=on_split)


def _release_cached_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def forward(model: Any, features: dict[str, Any]) -> np.ndarray:
    """One batch of tokenized features through the model: float32 sentence embeddings."""
    with torch.inference_mode():
        embeddings = model(batch_to_device(features, model.device))["sentence_embedding"]
        return embeddings.float().cpu().numpy()


def token_lengths(features: dict[str, Any]) -> list[int] | None:
    """Each text's token count (special tokens included, after truncation), from the attention mask."""
    mask = features.get("attention_mask")
    return None if mask is None else mask.sum(dim=1).tolist()


def iter_encode(
    model: Any,
    texts: Sequence[str],
    *,
    batch_size: int,
    prompt: str | None,
    token_budget: int | None = None,
    stats: TokenStats | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, raw float32 vectors)`` per run; the caller may stop between runs.

    ``stats``, when given, is updated with the tokens and padding of every
    forward pass that succeeded.
    """
    stats = stats if stats is not None else TokenStats()

    def split() -> None:
        stats.splits += 1

    for indices in batches(texts, batch_size):
        whole = model.preprocess([texts[i] for i in indices], prompt=prompt)

        def run(part: np.ndarray, whole: dict[str, Any] = whole, size: int = len(indices)) -> np.ndarray:
            features = whole if len(part) == size else model.preprocess([texts[i] for i in part], prompt=prompt)
            vectors = forward(model, features)
            stats.add(features)
            return vectors

        lengths = token_lengths(whole)
        runs = fit_budget(lengths, token_budget) if lengths is not None else [slice(0, len(indices))]
        stats.splits += len(runs) - 1
        for cut in runs:
            yield from halving(indices[cut], run, on_split=split)


def encode(
    model: Any, texts: Sequence[str], *, batch_size: int, prompt: str | None = None, token_budget: int | None = None
) -> np.ndarray:
    """All raw vectors at once, in input order."""
    out: np.ndarray | None = None
    for indices, vectors in iter_encode(model, texts, batch_size=batch_size, prompt=prompt, token_budget=token_budget):
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
        out[indices] = vectors
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
