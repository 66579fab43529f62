"""The examples run against the session's real servers and worker: their environment and their leftovers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests import helpers


@pytest.fixture
def example_env(worker_env: dict[str, str], session_worker, db, tmp_path: Path) -> dict[str, str]:
    """An example's environment: the session's EMBEDQ_* settings, and no env file of a local `embedq up`."""
    return {**helpers.env_without_embedq(), **worker_env, "EMBEDQ_ENV_FILE": str(tmp_path / "no-env-file")}


@pytest.fixture
def unique_name(db: psycopg.Connection) -> Iterator[str]:
    """A fresh collection and classifier name; whatever the test created under it is deleted afterwards."""
    name = f"ex-{uuid.uuid4().hex[:10]}"
    yield name
    db.execute("DELETE FROM collections WHERE name = %s", (name,))
    db.execute("DELETE FROM classifiers WHERE name = %s", (name,))
