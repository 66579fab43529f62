"""Telling an allocation failure from other errors: what a smaller batch, or a retry, may get past.

One rule for the whole worker: the encode core halves a batch that runs out
of memory, and a job whose smallest batch still does is released as the
retriable ``OutOfMemory`` instead of failing for good. Torch (CPU and CUDA),
ONNX Runtime (its arena, CUDA, ``std::bad_alloc``), OpenVINO and Python's own
``MemoryError`` say it in these ways. No import of torch: the class is
matched by name.
"""

from __future__ import annotations

MARKERS = (
    "out of memory",
    "failed to allocate memory",
    "allocaterawinternal",
    "bad_alloc",
    "bad allocation",
    "cannot allocate memory",
    "alloc_failed",
    "memoryallocation",
)
"""Lower-case fragments of the messages of allocation failures."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure that a smaller batch (or a later try) may avoid."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    message = str(exc).lower()
    return any(marker in message for marker in MARKERS)
