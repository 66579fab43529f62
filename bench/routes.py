"""The routes to a faster encoder that embedq does not serve, measured as the gate measures a backend.

Each route is loaded in this process and judged beside torch fp32 with the quality gate's own
measurement (embedq.cores.gate, on the data it ships) and the STS Benchmark split asked: the same
columns as ``bench/stsb.py --backends``. No service runs; nothing here is promoted.

Routes (``--routes``, comma-separated; default all):
  torch-bf16       the library's own model under torch.autocast("cpu", dtype=torch.bfloat16)
  openvino-bf16    the served OpenVINO bf16 backend, for comparison in the same run
  openvino-int8    OpenVINO static int8 through NNCF (nncf.quantize, model_type TRANSFORMER), calibrated
                   on 300 of the calibration texts embedq ships (embedq/cores/data/calibration.txt); the
                   layers NNCF keeps in float computed in f32
  onnx-int8-static ONNX Runtime static int8 (QDQ, per channel), calibrated on the same texts, only the
                   linear layers' MatMuls quantized: attention scores, softmax, layer norms and GELU in float

NNCF is not a dependency of embedq: ``--nncf-path`` names a folder holding it (``pip install --target DIR
--no-deps nncf ninja pydot rich tabulate``), appended to ``sys.path``; without it the route is skipped.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _stack import direct_model, exported_backend, load_sts, parser, worker_threads, write_record
from stsb import backend_table, direct_figures

from embedq.cores import backends as core
from embedq.cores import gate

ROUTES = ("torch-bf16", "openvino-bf16", "openvino-int8", "onnx-int8-static")
CALIBRATION_TEXTS = 300
PRECISION = {"torch-bf16": "bf16", "openvino-bf16": "bf16", "openvino-int8": "int8", "onnx-int8-static": "int8"}


def calibration_texts() -> list[str]:
    from importlib import resources

    lines = resources.files("embedq.cores").joinpath("data/calibration.txt").read_text().splitlines()
    step = len(lines) / CALIBRATION_TEXTS
    return [lines[int(i * step)] for i in range(CALIBRATION_TEXTS)]


class Autocast:
    """A SentenceTransformer whose ``encode`` runs under CPU autocast to bfloat16 (float32 out)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def encode(self, texts: list[str], **options: Any) -> np.ndarray:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            vectors = self.model.encode(texts, convert_to_numpy=False, convert_to_tensor=True, **options)
        return vectors.float().numpy()


def _feeds(folder: Path, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """Tokenized calibration batches (8 texts each) as the exported model's inputs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    feeds = []
    for start in range(0, len(texts), 8):
        batch = tokenizer(texts[start : start + 8], padding=True, truncation=True, return_tensors="np")
        feeds.append({name: np.asarray(value, dtype=np.int64) for name, value in batch.items()})
    return feeds


def onnx_export(root: Path, threads: int) -> tuple[Any, Path]:
    """The served ONNX export under ``root`` as its own SentenceTransformer, and the folder holding ``onnx/``."""
    model = exported_backend("onnx", root, threads)
    return model, next(root.rglob("onnx/model.onnx")).parent.parent


def openvino_int8(root: Path, threads: int, nncf_path: str | None) -> Any:
    if nncf_path:
        sys.path.append(nncf_path)
    import nncf
    import openvino

    from embedq.cores import openvino as ov

    model, onnx_folder = onnx_export(root, threads)
    source = openvino.Core().read_model(str(onnx_folder / "onnx" / "model.onnx"))
    inputs = {port.get_any_name() for port in source.inputs}
    feeds = [{k: v for k, v in feed.items() if k in inputs} for feed in _feeds(onnx_folder, calibration_texts())]
    quantized = nncf.quantize(
        source, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=CALIBRATION_TEXTS
    )
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1"}
    compiled = openvino.Core().compile_model(quantized, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"})
    transformer = model[0]
    transformer.model = ov.OpenVINOTransformer(compiled, transformer.model.config)
    return model


def onnx_int8_static(root: Path, threads: int) -> Any:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from sentence_transformers import SentenceTransformer

    folder = onnx_export(root, threads)[1]
    graph = onnx.load(str(folder / "onnx" / "model.onnx")).graph
    linear = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and any(i in {w.name for w in graph.initializer} for i in n.input)
    ]
    scores = [n.name for n in graph.node if n.op_type == "MatMul" and n.name not in linear]
    feeds = _feeds(folder, calibration_texts())

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    target = folder / "onnx" / "model_static_int8.onnx"
    quantize_static(
        str(folder / "onnx" / "model.onnx"),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=scores,
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return SentenceTransformer(
        str(folder),
        device="cpu",
        backend="onnx",
        local_files_only=True,
        model_kwargs={
            "file_name": "onnx/model_static_int8.onnx",
            "provider": "CPUExecutionProvider",
            "session_options": options,
        },
    )


def load_route(name: str, root: Path, threads: int, nncf_path: str | None) -> Any:
    if name == "torch-bf16":
        return Autocast(direct_model(threads))
    if name == "openvino-bf16":
        return exported_backend(core.variant("openvino-bf16", core.isa(), core.bf16_isa()), root, threads)
    if name == "openvino-int8":
        return openvino_int8(root, threads, nncf_path)
    if name == "onnx-int8-static":
        return onnx_int8_static(root, threads)
    raise SystemExit(f"unknown route {name!r}; the routes: {', '.join(ROUTES)}")


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--split", choices=("train", "dev", "test"), default="test", help="STSb split (default test)")
    p.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated (default {','.join(ROUTES)})")
    p.add_argument("--nncf-path", default=os.environ.get("EMBEDQ_BENCH_NNCF"), help="a folder holding nncf")
    args = p.parse_args()
    gold, s1, s2 = load_sts(args.split)
    unique = list(dict.fromkeys(s1 + s2))
    sts = ({s: i for i, s in enumerate(unique)}, s1, s2, gold)
    data, threads = gate.shipped(), worker_threads()
    figures: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    reference: gate.Measured | None = None
    torch_rho = 0.0
    with tempfile.TemporaryDirectory(prefix="embedq-bench-routes-") as tmp:
        for name in ["torch", *(r.strip() for r in args.routes.split(",") if r.strip())]:
            t0 = time.perf_counter()
            try:
                model = (
                    direct_model(threads)
                    if name == "torch"
                    else load_route(name, Path(tmp) / name, threads, args.nncf_path)
                )
            except (ImportError, core.BackendUnavailable) as exc:
                skipped[name] = str(exc)
                print(f"{name}: skipped: {exc}", flush=True)
                continue
            built_s = time.perf_counter() - t0
            rho, measured = direct_figures(model, unique, sts, data)
            del model
            if reference is None:
                reference, torch_rho = measured, rho
            precision = "fp32" if name == "torch" else PRECISION[name]
            criteria = gate.Criteria(invariance=core.INVARIANCE[precision])
            judged = gate.judge(reference, measured, data, criteria).record(backend=name, precision=precision)
            figures[name] = {"spearman": rho, "delta": rho - torch_rho, "gate": judged, "load_s": built_s}
            print(f"{name}: built in {built_s:.1f}s, measured in {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"\nSTSb {args.split} Spearman and the quality gate's figures, direct, {threads} threads, beside torch fp32")
    backend_table(figures)
    write_record(f"routes-{args.split}", args, {"routes": figures, "skipped": skipped})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
