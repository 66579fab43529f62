"""OpenVINO behind a sentence-transformers model: the transformer's forward pass on OpenVINO's CPU plugin.

The ``openvino`` package alone (no optimum-intel) compiles the ONNX fp32
file that the ``onnx`` backend exports, and ``OpenVINOTransformer`` stands in
for the model inside the first module of a ``SentenceTransformer`` loaded
from that export: tokenization, pooling, dense layers and normalization stay
the library's own, only the transformer's forward pass runs on OpenVINO.

Precision is chosen, never left to the plugin: ``f32`` (the ``openvino``
backend, the library's floats to float rounding) or ``bf16`` (the
``openvino-bf16`` backend, where the CPU computes bf16: AMX or AVX512-BF16).
The plugin's own default is bf16 wherever the CPU has it, so a fleet of
mixed CPUs would compute different vectors for the same text; the compiled
model's ``INFERENCE_PRECISION_HINT`` is read back and a precision the CPU
did not grant is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

PRECISIONS = {"f32": "f32", "bf16": "bf16"}
"""Our precision names → OpenVINO's ``INFERENCE_PRECISION_HINT`` values."""
_GRANTED = {"f32": "float32", "bf16": "bfloat16"}
"""How the compiled model's ``INFERENCE_PRECISION_HINT`` spells each precision back."""


class PrecisionUnavailable(Exception):
    """The CPU plugin will not compute in the precision asked for."""


def cpu_capabilities() -> set[str]:
    """The CPU plugin's optimization capabilities on this machine (``BF16``, ``FP32``, ``INT8``, ...)."""
    import openvino

    return set(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def compile_model(file: Path, *, precision: str, threads: int) -> Any:
    """``file`` (ONNX) compiled for the CPU in ``precision`` (``f32`` or ``bf16``) on ``threads`` threads.

    Raises:
        PrecisionUnavailable: the compiled model computes in another precision.
    """
    import openvino

    config = {
        "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
        "INFERENCE_NUM_THREADS": str(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }
    compiled = openvino.Core().compile_model(str(file), "CPU", config)
    granted = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
    if _GRANTED[precision] not in granted:
        raise PrecisionUnavailable(f"OpenVINO's CPU plugin computes in {granted} here, not {precision}")
    return compiled


class OpenVINOTransformer(torch.nn.Module):
    """A compiled OpenVINO model in the place of a transformers model: ``forward`` gives ``last_hidden_state``.

    Holds one infer request: calls from several threads must be serialized
    (a worker process runs one job at a time).
    """

    def __init__(self, compiled: Any, config: Any) -> None:
        super().__init__()
        self.config = config
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.inputs = [port.get_any_name() for port in compiled.inputs]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if given.get("token_type_ids") is None and input_ids is not None:
            given["token_type_ids"] = torch.zeros_like(input_ids)
        feed = {name: np.ascontiguousarray(_array(given[name]), dtype=np.int64) for name in self.inputs}
        output = self.request.infer(feed)[0]
        return {"last_hidden_state": torch.from_numpy(np.array(output, dtype=np.float32))}


def _array(tensor: torch.Tensor | None) -> np.ndarray:
    if tensor is None:
        raise ValueError("the exported model asks for an input the tokenizer did not produce")
    return tensor.numpy()


def load(folder: Path, onnx_file: str, *, precision: str, threads: int, device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` from the ONNX export in ``folder`` whose transformer runs on OpenVINO.

    The export is opened with the library's ONNX loader (for its
    configuration, tokenizer and modules), then its ONNX Runtime session is
    replaced by the compiled OpenVINO model.
    """
    import onnxruntime
    from sentence_transformers import SentenceTransformer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    model = SentenceTransformer(
        str(folder),
        device=device,
        backend="onnx",
        local_files_only=True,
        trust_remote_code=False,
        model_kwargs={"file_name": onnx_file, "provider": "CPUExecutionProvider", "session_options": options},
    )
    transformer = model[0]
    compiled = compile_model(folder / onnx_file, precision=precision, threads=threads)
    transformer.model = OpenVINOTransformer(compiled, transformer.model.config)
    return model
