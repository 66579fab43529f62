"""What this machine offers: its hardware class, GPUs and cores, detected without importing torch or touching CUDA."""

from __future__ import annotations

import os
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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    return len(os.sched_getaffinity(0))


def parse_devices(text: str | None, *, hardware: str, count: int) -> tuple[str, ...]:
    """The CUDA devices of ``--devices`` (comma-separated ids or UUIDs); every listed GPU when not given.

    ``count`` is how many GPUs the machine has; a numeric id must be below it. A CPU worker takes none.
    """
    if hardware != "gpu":
        if text:
            raise ValueError("--devices is for GPU workers (--hardware gpu)")
        return ()
    if not text:
        return tuple(str(index) for index in range(count))
    devices = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for device in devices:
        if device.isdigit() and int(device) >= count:
            raise ValueError(f"--devices {text}: no GPU {device} (nvidia-smi lists {count})")
    if not devices:
        raise ValueError(f"--devices {text!r} names no device")
    return devices
