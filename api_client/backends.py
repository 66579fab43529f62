"""The names of the backends a worker computes with, shared by the settings, the requests and the worker.

A request names one of ``BACKENDS``. ``auto`` (the default) is the backend
promoted for the model version fleet-wide (``embedq models promote``, or the
gate run by the first ``embedq up``), torch fp32 while none is; ``torch``
is always exactly the library's floats. The ``models`` row of a version
records what actually ran it: int8 and bf16 rows name the instruction set
(``onnx-int8-avx512_vnni``, ``openvino-bf16-amx``), since the same weights
computed with another one give other vectors and need their own gate and
cache entries.
"""

from __future__ import annotations

from typing import Literal

Backend = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")
GATED: tuple[str, ...] = ("onnx", "onnx-int8", "openvino", "openvino-bf16")
"""Backends that serve a model version only after its quality gate passed (all but torch)."""
INT8 = "onnx-int8"
BF16 = "openvino-bf16"


def requested(row_backend: str) -> str:
    """The name a request uses for a ``models`` row's backend (``onnx-int8-avx2`` → ``onnx-int8``)."""
    for family in (INT8, BF16):
        if row_backend.startswith(f"{family}-"):
            return family
    return row_backend
