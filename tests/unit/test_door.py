"""One door per kind: each kind declared once, each with one runner, and one finish for all of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from api_client import results
from api_client.kinds import BY_TASK, CLIENT_METHODS, KINDS, Kind, declare, summing
from api_client.requests import Request

ROOT = Path(__file__).resolve().parents[2]


def test_a_kind_without_a_runner_fails_the_worker_at_import() -> None:
    code = (
        "from api_client import results\n"
        "from api_client.kinds import Kind, declare\n"
        "from api_client.requests import Request\n"
        "class Orphan(Request):\n    pass\n"
        "declare(Kind(name='orphan', request=Orphan, read_result=results.read_summary, output='nothing'))\n"
        "import embedq.worker.tasks\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1
    assert "ImportError: job kind(s) orphan declared in api_client.kinds have no runner" in done.stderr


def test_a_kind_is_declared_once_and_runs_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        declare(KINDS["encode"])
    from embedq.worker.runners import RUNNERS, runs

    with pytest.raises(ValueError, match="two runners"):
        runs("encode")(RUNNERS["encode"])
    with pytest.raises(ValueError, match="no such job kind"):
        runs("no-such-kind")(RUNNERS["encode"])


def test_every_declared_kind_has_a_runner_a_task_and_a_schema() -> None:
    from embedq.worker.runners import RUNNERS
    from embedq.worker.tasks import TASKS

    assert set(RUNNERS) == set(KINDS) and "cluster" in KINDS
    assert set(TASKS) == {f"embedq.{name}" for name in KINDS} == set(BY_TASK)
    for name, kind in KINDS.items():
        assert issubclass(kind.request, Request), name
    assert {"encode", "similarity", "paraphrases", "cluster"} <= set(CLIENT_METHODS)


def _calls_and_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "embedq" / "worker" / "runners").glob("*.py")), ids=lambda p: p.name)
def test_runners_neither_parse_nor_finish(path: Path) -> None:
    used = _calls_and_imports(path)
    assert not used & {"embedq.worker.lease.finish", "finish_job", "embedq.worker.finishing.finish", "commit"}
    assert not any(name.startswith("embedq.worker.runners.") and name.count(".") > 3 for name in used), (
        "runners do not import each other"
    )
    assert "parse" not in used, "handle parses the request once; a runner takes it typed"


def test_chunk_summaries_merge_in_python() -> None:
    merge = summing("count", "cached", after=lambda merged: {**merged, "ratio": merged["cached"] / merged["count"]})
    merged = merge([{"count": 2, "cached": 1, "model": "m"}, {"count": 3, "cached": 3, "model": "m"}])
    assert merged == {"count": 5, "cached": 4, "model": "m", "ratio": 0.8}
    encode = KINDS["encode"].merge(
        [
            {"count": 2, "cached": 0, "encoded": 2, "tokens": 10, "padded_tokens": 20, "unique": 2, "backend": "torch"},
            {"count": 2, "cached": 1, "encoded": 1, "tokens": 30, "padded_tokens": 30, "unique": 2, "backend": "torch"},
        ]
    )
    assert encode["count"] == 4 and encode["encoded"] == 3 and encode["padding_waste"] == round(1 - 40 / 50, 4)
    assert "unique" not in encode and encode["backend"] == "torch"


def test_a_new_kind_needs_no_edit_of_the_registries() -> None:
    """Kinds, runners and commands are found by pkgutil: no registry module names a kind."""
    for registry in ("api_client/kinds/__init__.py", "embedq/worker/runners/__init__.py", "embedq/worker/tasks.py"):
        source = (ROOT / registry).read_text()
        assert not [name for name in KINDS if f'"{name}"' in source or f"'{name}'" in source], registry
    assert all(kind.task_name == f"embedq.{kind.name}" for kind in KINDS.values())
    assert isinstance(KINDS["cluster"], Kind) and KINDS["cluster"].read_result is not results.read_summary
