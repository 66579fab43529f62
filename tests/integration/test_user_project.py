"""embedq inside a user's Celery project: their tasks.py, worker.py, settings.py and migrations/ stay theirs.

The folder the commands run from holds modules with the names a Celery or
Django project has; importing any of them writes a marker file. `embedq up`,
its worker, and a client script all run from there, a job goes through, and
no marker appears.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests.integration.test_up import SMALL_GATE, scratch_dir

MARKER = "imported-user-module"
USER_MODULES = ("tasks.py", "worker.py", "settings.py", "celeryconfig.py", "migrations/__init__.py", "api.py")


def user_project(root: Path) -> Path:
    project = root / "project"
    for name in USER_MODULES:
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "from pathlib import Path\n"
            f"Path(__file__).resolve().parent.joinpath('{MARKER}-' + __name__).touch()\n"
            "raise ImportError('the user project module ' + __name__ + ' was imported by embedq')\n"
        )
    return project


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


def markers(project: Path) -> list[str]:
    return sorted(path.name for path in project.rglob(f"{MARKER}-*"))


def test_embedq_up_its_worker_and_a_client_run_from_a_celery_project_folder(tmp_path: Path, scratch: Path) -> None:
    project = user_project(tmp_path)
    data_dir = scratch / "stack"
    log = tmp_path / "up.log"
    env = {**helpers.env_without_embedq(), "HF_HUB_OFFLINE": "1", "EMBEDQ_BACKEND": "torch", **SMALL_GATE}
    embedq = str(Path(sys.executable).with_name("embedq"))
    with log.open("wb") as out:
        up = subprocess.Popen(
            [embedq, "up", "--data-dir", str(data_dir), "--loglevel", "warning"],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    env_file = data_dir / "env"
    try:
        helpers.wait_until(lambda: env_file.exists() or up.poll() is not None, timeout=180, what="the env file")
        assert up.poll() is None, log.read_text()[-3000:]
        client = subprocess.run(
            [
                sys.executable,
                "-c",
                "from api_client import EmbedQ\n"
                "eq = EmbedQ.from_env()\n"
                "print(eq.encode(['my card was charged twice']).result(timeout=120).shape)\n",
            ],
            cwd=project,  # python -c puts this folder first on sys.path, as a user's script would
            env={**env, "EMBEDQ_ENV_FILE": str(env_file)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "(1, 384)"
        listed = subprocess.run(
            [embedq, "jobs", "--json"],
            cwd=project,
            env={**env, "EMBEDQ_ENV_FILE": str(env_file)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        status = up.wait(timeout=120)
    assert status == 0, log.read_text()[-3000:]
    assert markers(project) == [], log.read_text()[-3000:]
