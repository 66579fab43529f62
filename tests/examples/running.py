"""Running an example as its users do: a subprocess from the repository root (or the folder given)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(args: list[str], env: dict[str, str], *, cwd: Path = ROOT, timeout: float = 120) -> str:
    """Run ``python ARGS`` as a user would; its stdout, or a failure that shows its stderr."""
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited with {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout
