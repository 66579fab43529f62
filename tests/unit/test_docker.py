"""The compose file and the Dockerfiles, checked without a container engine: what they copy exists, what they
run is a command embedq has, with options it takes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from embedq.worker.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yml").read_text())
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


def _parses(argv: list[str]) -> None:
    """``argv`` parses as an ``embedq`` command line (argparse exits on anything it does not know)."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`embedq {shlex.join(argv)}` is not a command embedq takes (exit {exc.code})")


def _services() -> dict[str, dict]:
    return COMPOSE["services"]


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_runs_a_command_the_project_has(name: str) -> None:
    service = _services()[name]
    build = service.get("build")
    if build is not None:
        context = (DOCKER / build["context"]).resolve()
        assert (context / build["dockerfile"]).is_file(), build
    if "image" in service:
        return  # Redis and PostgreSQL: images of their own
    entrypoint = service.get("entrypoint")
    if entrypoint:  # Flower: Celery's command on our app
        assert entrypoint[:3] == ["celery", "-A", "embedq.worker.app"] and entrypoint[3] == "flower"
        return
    _parses(service["command"])
    check = service.get("healthcheck", {}).get("test")
    if check is not None:
        assert check[:2] == ["CMD", "embedq"]
        _parses(check[2:])


def test_workers_are_checked_for_health_and_the_gpu_worker_has_its_profile() -> None:
    workers = {name: service for name, service in _services().items() if "worker" in service.get("command", [])[:1]}
    assert len(workers) >= 3 and all("healthcheck" in service for service in workers.values())
    gpu = _services()["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "--hardware" in gpu["command"] and "gpu" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: path.name)
def test_every_dockerfile_copies_what_exists_and_runs_embedq(path: Path) -> None:
    text = path.read_text()
    for source in re.findall(r"^COPY\s+(\S+)\s+\S+$", text, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"{path.name} copies {source}, which is not in the repository"
    assert 'ENTRYPOINT ["embedq"]' in text
    command = re.search(r"^CMD (\[.*\])$", text, flags=re.MULTILINE)
    assert command is not None
    _parses(yaml.safe_load(command.group(1)))
    assert '"torch==2.13.0"' in text and "-c requirements/constraints.txt" in text


def test_the_compose_file_names_the_dockerfiles_there_are() -> None:
    named = {Path(service["build"]["dockerfile"]).name for service in _services().values() if "build" in service}
    named |= {Path(COMPOSE["x-embedq"]["build"]["dockerfile"]).name}
    assert named == {path.name for path in DOCKERFILES}
