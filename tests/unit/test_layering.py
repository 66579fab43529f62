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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of ``api_client`` and ``embedq`` and the modules of ours it imports, anywhere in it (imports
    for type annotations only, under ``if TYPE_CHECKING``, are not run and do not count)."""
    paths = [*sorted((ROOT / "api_client").rglob("*.py")), *sorted((ROOT / "embedq").rglob("*.py"))]
    modules = {_module_name(path): path for path in paths if "versions" not in path.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = {
            id(inner)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for inner in ast.walk(block)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: no import at run time
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for target in targets:
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without the edges from a package to its own modules (an ``__init__`` that discovers them)."""
    return {name: {other for other in edges if not other.startswith(f"{name}.")} for name, edges in graph.items()}


def test_no_import_cycles_not_even_inside_functions() -> None:
    assert cycles(_package_parents(import_graph())) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
