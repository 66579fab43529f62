"""What ``pip install embedq`` puts into a user's site-packages: two top-level names, nothing generic."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_only_api_client_and_embedq(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building leaves build/ and *.egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("api_client", "embedq"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("embedq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"api_client", "embedq"}  # no top-level tasks, worker or migrations to shadow a user's
    # The data the gate and the migrations need travel with the package.
    for needed in (
        "embedq/cores/data/stsb_dev.tsv",
        "embedq/cores/data/gate_documents.txt",
        "embedq/migrations/versions/0008_family_without_kinds.py",
        "embedq/migrations/script.py.mako",
    ):
        assert needed in names
    entry = next(name for name in names if name.endswith("entry_points.txt"))
    assert "embedq = embedq.worker.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
