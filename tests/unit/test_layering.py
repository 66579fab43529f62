"""Imports point one way: ``embedq.worker → embedq.cores → api_client``, and the client never imports the model stack.

Read from the source with ``ast``, so an import inside a function counts as
much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "faiss", "sklearn", "setfit", "sentence_transformers", "transformers", "onnxruntime", "optimum"}
FORBIDDEN = {
    "api_client": {"embedq", *HEAVY},
    "embedq/cores": {"embedq.worker", "embedq.migrations", "celery", "kombu", "psycopg", "psycopg_pool"},
}


def imported_modules(path: Path) -> set[str]:
    """The dotted names of every module ``path`` imports (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every package ``path`` imports."""
    return {name.split(".")[0] for name in imported_modules(path)}


def _forbidden(imported: set[str], forbidden: set[str]) -> list[str]:
    return sorted(name for name in imported if any(name == f or name.startswith(f"{f}.") for f in forbidden))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_only_what_is_below_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    offending = {str(path.relative_to(ROOT)): _forbidden(imported_modules(path), FORBIDDEN[package]) for path in files}
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    import torch.nn\n    from embedq.worker.cli import main\n    from . import sibling\n"
    )
    assert imported_packages(module) == {"torch", "embedq"}
