"""CPU backends: which ones this machine can run, how their files are made, how they are loaded.

A backend other than torch runs from files exported from the model's folder:
ONNX fp32 (``onnx/model.onnx``), ONNX int8 quantized dynamically for the
CPU's instruction set, or OpenVINO where ``optimum-intel`` is installed.
``export`` writes a whole sentence-transformers folder (configuration,
tokenizer, pooling and the backend's file, without the torch weights), which
the worker stores as a versioned artifact and loads with ``load_kwargs``.

Int8 files by instruction set. ``avx512_vnni`` and ``arm64`` quantize the
weights to int8 (their two configurations are the same); ``avx2`` to
uint8, because AVX2 without VNNI multiplies uint8 by int8 with saturation.
On the project's 2-core avx512_vnni machine the avx2 file ran at 0.6 times ONNX
fp32 (89 against 151 texts/s, one thread) while the vnni file ran at 1.5 times
(222), so ``auto`` considers int8 only on avx512_vnni and arm64; an avx2
machine runs int8 when a request or ``EMBEDQ_BACKEND`` asks for it.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any

from api_client.backends import INT8

ISAS: tuple[str, ...] = ("avx512_vnni", "avx2", "arm64")
AUTO_INT8_ISAS: tuple[str, ...] = ("avx512_vnni", "arm64")
"""Instruction sets whose int8 file was faster than ONNX fp32, so ``auto`` may pick it."""
ONNX_FILE = "onnx/model.onnx"
OPENVINO_FILE = "openvino/openvino_model.xml"
_INT8_FILES = {
    "avx512_vnni": "onnx/model_qint8_avx512_vnni.onnx",
    "avx2": "onnx/model_quint8_avx2.onnx",
    "arm64": "onnx/model_qint8_arm64.onnx",
}
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.h5", "*.msgpack")


class BackendUnavailable(Exception):
    """This machine cannot run the backend; the message says what to install or why not."""


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def detect_isa(flags: set[str], machine: str) -> str | None:
    """The instruction set to quantize for: ``avx512_vnni``, ``avx2``, ``arm64``, or ``None`` (no int8)."""
    if machine.lower() in ("aarch64", "arm64"):
        return "arm64"
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx2" in flags:
        return "avx2"
    return None


def isa() -> str | None:
    """This machine's instruction set for int8 (from ``/proc/cpuinfo`` and the platform)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return detect_isa(cpu_flags(text), platform.machine())


def variant(backend: str, machine_isa: str | None) -> str:
    """The ``models`` row backend for a requested one: int8 names its instruction set.

    Raises:
        BackendUnavailable: int8 on a CPU without a known instruction set.
    """
    if backend != INT8:
        return backend
    if machine_isa is None:
        raise BackendUnavailable("onnx-int8 needs AVX2, AVX512-VNNI or an ARM64 CPU; this one has none of them")
    return f"{INT8}-{machine_isa}"


def candidates(machine_isa: str | None) -> list[str]:
    """The gated backends ``auto`` may pick on this machine, fastest first (torch, always there, comes last)."""
    found = [variant(INT8, machine_isa)] if machine_isa in AUTO_INT8_ISAS else []
    found += ["onnx", "openvino"]
    return [name for name in found if unavailable(name) is None]


def unavailable(name: str) -> str | None:
    """Why this machine cannot run backend ``name`` (a row backend), or ``None`` when it can."""
    if name == "torch":
        return None
    if name == "openvino":
        if importlib.util.find_spec("openvino") is None or importlib.util.find_spec("optimum.intel") is None:
            return "the openvino backend needs OpenVINO: pip install 'sentence-transformers[openvino]'"
        return None
    if name == "onnx" or name.removeprefix(f"{INT8}-") in _INT8_FILES:
        if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("optimum.onnxruntime") is None:
            return f"the {name} backend needs ONNX Runtime: pip install 'sentence-transformers[onnx]'"
        return None
    return f"unknown backend {name!r}"


def file_name(name: str) -> str:
    """The backend's model file inside its artifact folder."""
    if name == "onnx":
        return ONNX_FILE
    if name == "openvino":
        return OPENVINO_FILE
    return _INT8_FILES[name.removeprefix(f"{INT8}-")]


def export(source: Path, name: str, folder: Path) -> None:
    """Write a sentence-transformers folder for backend ``name`` of the model in ``source`` into ``folder``.

    The folder holds the model's configuration, tokenizer and modules plus
    the backend's file (``file_name(name)``), and no torch weights. Runs
    offline: the export reads ``source`` only.
    """
    from sentence_transformers import SentenceTransformer

    reason = unavailable(name)
    if reason is not None:
        raise BackendUnavailable(reason)
    backend = "openvino" if name == "openvino" else "onnx"
    with warnings.catch_warnings():  # the exporter's tracer warns about shapes it fixes; the gate judges the result
        warnings.simplefilter("ignore")
        model = SentenceTransformer(
            str(source), device="cpu", backend=backend, local_files_only=True, trust_remote_code=False
        )
        model.save_pretrained(str(folder))
        if name.startswith(f"{INT8}-"):
            from sentence_transformers.backend import export_dynamic_quantized_onnx_model

            isa_name = name.removeprefix(f"{INT8}-")
            export_dynamic_quantized_onnx_model(model, isa_name, str(folder))
            (folder / ONNX_FILE).unlink()
    exported = getattr(model.transformers_model, "_model_save_dir_tempdirectory_instance", None)
    if exported is not None:  # the exporter's scratch folder, removed now rather than at garbage collection
        exported.cleanup()
    for pattern in _WEIGHTS:
        for path in folder.rglob(pattern):
            path.unlink()
    for path in folder.rglob("*"):
        if path.is_dir() and not any(path.iterdir()):
            shutil.rmtree(path)


def load_kwargs(name: str, *, threads: int) -> dict[str, Any]:
    """``SentenceTransformer`` keyword arguments that load backend ``name`` from its artifact folder.

    ONNX Runtime and OpenVINO get ``threads`` intra-op threads, the same
    per-process share torch gets, so processes and threads add up to the
    cores. ONNX Runtime's worker threads do not spin while waiting (on a
    shared machine a spinning thread takes a core from a neighbour).
    """
    if name == "torch":
        return {}
    if name == "openvino":
        return {
            "backend": "openvino",
            "model_kwargs": {"file_name": OPENVINO_FILE, "ov_config": {"INFERENCE_NUM_THREADS": str(threads)}},
        }
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {
        "backend": "onnx",
        "model_kwargs": {
            "file_name": file_name(name),
            "provider": "CPUExecutionProvider",
            "session_options": options,
        },
    }
