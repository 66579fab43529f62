"""CPU backends: which ones this machine can run, how their files are made, how they are loaded.

A backend other than torch runs from files exported from the model's folder
(an artifact the worker stores and verifies):

- ``onnx``: the ONNX fp32 file (``onnx/model.onnx``) on ONNX Runtime;
- ``openvino``: the same file compiled by OpenVINO's CPU plugin in f32
  (``embedq.cores.openvino``; the ``openvino`` package alone, no optimum-intel);
- ``openvino-bf16``: the same file compiled in bf16, on a CPU that computes
  bf16 (AMX or AVX512-BF16). Its ``models`` row names the instruction set
  (``openvino-bf16-amx``): bf16 kernels differ per instruction set, so a
  fleet of mixed CPUs never mixes their vectors;
- ``onnx-int8``: the ONNX file quantized dynamically for the CPU's
  instruction set (``onnx-int8-avx512_vnni``). Dynamic quantization takes
  each activation's range from the whole batch, so a text's vector depends
  on its batch-mates: the gate's invariance check refuses it. It stays
  runnable so that the refusal is measured, not assumed.

Every backend has a precision (``precision``), and the gate's invariance
tolerance is that precision's (``INVARIANCE``).
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any

from api_client.backends import BF16, INT8

INT8_ISAS: tuple[str, ...] = ("avx512_vnni", "avx2", "arm64")
BF16_ISAS: tuple[str, ...] = ("amx", "avx512_bf16")
ONNX_FILE = "onnx/model.onnx"
_INT8_FILES = {
    "avx512_vnni": "onnx/model_qint8_avx512_vnni.onnx",
    "avx2": "onnx/model_quint8_avx2.onnx",
    "arm64": "onnx/model_qint8_arm64.onnx",
}
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.h5", "*.msgpack")

INVARIANCE: dict[str, float] = {"fp32": 1e-5, "bf16": 5e-3, "fp16": 5e-3, "int8": 0.0}
"""Max |Δ| per component allowed between a text's vector alone and inside any batch, by precision.

int8 must be identical: its activation ranges are to be fixed per model version, never per batch."""


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
    """The instruction set to quantize int8 for: ``avx512_vnni``, ``avx2``, ``arm64``, or ``None``."""
    if machine.lower() in ("aarch64", "arm64"):
        return "arm64"
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx2" in flags:
        return "avx2"
    return None


def detect_bf16(flags: set[str], machine: str) -> str | None:
    """The instruction set OpenVINO computes bf16 with: ``amx``, ``avx512_bf16``, or ``None`` (no bf16)."""
    if machine.lower() in ("aarch64", "arm64"):
        return None
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def _flags() -> set[str]:
    try:
        return cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return set()


def isa() -> str | None:
    """This machine's instruction set for int8 (from ``/proc/cpuinfo`` and the platform)."""
    return detect_isa(_flags(), platform.machine())


def bf16_isa() -> str | None:
    """This machine's instruction set for bf16, or ``None``."""
    return detect_bf16(_flags(), platform.machine())


def variant(backend: str, machine_isa: str | None, machine_bf16: str | None = None) -> str:
    """The ``models`` row backend for a requested one: int8 and bf16 name their instruction set.

    Raises:
        BackendUnavailable: int8 or bf16 on a CPU without a known instruction set for it.
    """
    if backend == INT8:
        if machine_isa is None:
            raise BackendUnavailable("onnx-int8 needs AVX2, AVX512-VNNI or an ARM64 CPU; this one has none of them")
        return f"{INT8}-{machine_isa}"
    if backend == BF16:
        if machine_bf16 is None:
            raise BackendUnavailable("openvino-bf16 needs a CPU with AMX or AVX512-BF16; this one has neither")
        return f"{BF16}-{machine_bf16}"
    return backend


def precision(name: str) -> str:
    """What a row backend computes in: ``fp32``, ``bf16`` or ``int8``."""
    if name.startswith(f"{INT8}-"):
        return "int8"
    if name.startswith(f"{BF16}-"):
        return "bf16"
    return "fp32"


def candidates(machine_isa: str | None, machine_bf16: str | None = None) -> list[str]:
    """The backends the gate may judge on this machine (row names), torch excluded."""
    found = [f"{BF16}-{machine_bf16}"] if machine_bf16 else []
    found += ["openvino", "onnx"]
    found += [f"{INT8}-{machine_isa}"] if machine_isa else []
    return [name for name in found if unavailable(name) is None]


def _missing(*modules: str) -> bool:
    return any(importlib.util.find_spec(module) is None for module in modules)


def unavailable(name: str) -> str | None:
    """Why this machine cannot run backend ``name`` (a row backend), or ``None`` when it can."""
    reason = None
    if name == "openvino" or name.startswith(f"{BF16}-"):
        if _missing("openvino", "onnxruntime", "optimum.onnxruntime"):
            reason = f"the {name} backend needs OpenVINO: pip install 'embedq[worker]' (the openvino package)"
        elif name.startswith(f"{BF16}-") and name.removeprefix(f"{BF16}-") != bf16_isa():
            wants = name.removeprefix(f"{BF16}-")
            reason = f"{name} runs on a CPU with {wants}; this one has {bf16_isa() or 'no bf16'}"
    elif name == "onnx" or name.removeprefix(f"{INT8}-") in _INT8_FILES:
        if _missing("onnxruntime", "optimum.onnxruntime"):
            reason = f"the {name} backend needs ONNX Runtime: pip install 'sentence-transformers[onnx]'"
    elif name != "torch":
        reason = f"unknown backend {name!r}"
    return reason


def export_name(name: str) -> str:
    """The artifact a backend runs from: ``onnx`` for the ONNX and OpenVINO backends, else its own."""
    return name if name.startswith(f"{INT8}-") else "onnx"


def file_name(name: str) -> str:
    """The backend's model file inside its artifact folder."""
    if name.startswith(f"{INT8}-"):
        return _INT8_FILES[name.removeprefix(f"{INT8}-")]
    return ONNX_FILE


def export(source: Path, name: str, folder: Path) -> None:
    """Write a sentence-transformers folder for artifact ``name`` (``export_name``) of the model in ``source``.

    The folder holds the model's configuration, tokenizer and modules plus
    the backend's file (``file_name(name)``), and no torch weights. Runs
    offline: the export reads ``source`` only.
    """
    from sentence_transformers import SentenceTransformer

    if _missing("onnxruntime", "optimum.onnxruntime"):
        raise BackendUnavailable(f"exporting {name} needs ONNX Runtime: pip install 'sentence-transformers[onnx]'")
    with warnings.catch_warnings():  # the exporter's tracer warns about shapes it fixes; the gate judges the result
        warnings.simplefilter("ignore")
        model = SentenceTransformer(
            str(source), device="cpu", backend="onnx", local_files_only=True, trust_remote_code=False
        )
        model.save_pretrained(str(folder))
        if name.startswith(f"{INT8}-"):
            from sentence_transformers.backend import export_dynamic_quantized_onnx_model

            export_dynamic_quantized_onnx_model(model, name.removeprefix(f"{INT8}-"), str(folder))
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


def load(name: str, folder: Path, *, threads: int) -> Any:
    """A ``SentenceTransformer`` running backend ``name`` from its artifact ``folder``.

    ONNX Runtime and OpenVINO get ``threads`` intra-op threads, the same
    per-process share torch gets, so processes and threads add up to the
    cores. ONNX Runtime's worker threads do not spin while waiting (on a
    shared machine a spinning thread takes a core from a neighbour).
    """
    if name == "openvino" or name.startswith(f"{BF16}-"):
        from embedq.cores import openvino

        precision_hint = "bf16" if name.startswith(f"{BF16}-") else "f32"
        try:
            return openvino.load(folder, file_name(name), precision=precision_hint, threads=threads)
        except openvino.PrecisionUnavailable as exc:
            raise BackendUnavailable(f"{name}: {exc}") from exc
    import onnxruntime
    from sentence_transformers import SentenceTransformer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return SentenceTransformer(
        str(folder),
        device="cpu",
        backend="onnx",
        local_files_only=True,
        trust_remote_code=False,
        model_kwargs={"file_name": file_name(name), "provider": "CPUExecutionProvider", "session_options": options},
    )
