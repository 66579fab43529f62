"""Which hardware class this machine offers, detected without importing torch or touching CUDA."""

from __future__ import annotations

import shutil
import subprocess


def gpu_count() -> int:
    """NVIDIA GPUs that ``nvidia-smi -L`` lists (0 when the tool is missing or fails)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def detect(requested: str = "auto") -> str:
    """``cpu`` or ``gpu``; ``auto`` picks ``gpu`` when one is present."""
    if requested not in ("auto", "cpu", "gpu"):
        raise ValueError(f"hardware must be auto, cpu or gpu, not {requested!r}")
    if requested == "auto":
        return "gpu" if gpu_count() else "cpu"
    if requested == "gpu" and not gpu_count():
        raise RuntimeError("--hardware gpu asked for, but nvidia-smi lists no GPU on this machine")
    return requested
