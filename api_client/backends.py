"""The names of the backends a worker computes with, shared by the settings, the requests and the worker.

A request (or ``EMBEDQ_BACKEND``) names one of ``BACKENDS``; ``auto`` lets
the worker pick the fastest one whose quality gate passed for the model
version. The ``models`` row of a version records what actually ran it: an
int8 row names the instruction set its file was quantized for
(``onnx-int8-avx512_vnni``), since the same weights quantized for another one
give other vectors and need their own gate and cache entries.
"""

from __future__ import annotations

from typing import Literal

Backend = Literal["auto", "torch", "onnx", "onnx-int8", "openvino"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8", "openvino")
GATED: tuple[str, ...] = ("onnx", "onnx-int8", "openvino")
"""Backends that serve a model version only after its quality gate passed (all but torch)."""
INT8 = "onnx-int8"


def requested(row_backend: str) -> str:
    """The name a request uses for a ``models`` row's backend (``onnx-int8-avx2`` → ``onnx-int8``)."""
    return INT8 if row_backend.startswith(f"{INT8}-") else row_backend
