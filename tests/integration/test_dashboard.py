"""The job dashboard in a real headless Chromium: the page shows a job that just ran, and the fleet.

Chromium is Debian's (`apt-get install chromium`). Without it the test is
skipped on a developer's machine and fails under `.ci/run`, which installs
it and sets ``EMBEDQ_TEST_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from embedq.worker.dashboard import start
from tests import helpers

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Debian's chromium is needed for the dashboard's browser test: apt-get install chromium"
        if os.environ.get("EMBEDQ_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def render(url: str, profile: Path, *extra: str) -> str:
    """The page's DOM once its scripts ran (a budget of virtual time lets the fetch and the render finish)."""
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=8000", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def dashboard(settings):
    server = start(settings)
    yield server
    server.shutdown()
    server.server_close()


def test_the_page_shows_a_job_that_just_ran_and_the_fleet(eq, db, dashboard, tmp_path: Path) -> None:
    job = eq.encode(helpers.unique_texts(3))
    job.wait(timeout=60)
    failed_id = str(uuid.uuid4())  # a plain Celery client's bad request: a failed row saying why
    eq._producer.send_task("embedq.encode", kwargs={"request": {"texts": []}}, task_id=failed_id)
    helpers.wait_until(lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s", (failed_id,)).fetchone(), what="a row")
    dom = render(dashboard.url, tmp_path / "profile", "--dump-dom")
    assert job.id in dom and failed_id in dom
    row = dom[dom.index(job.id) :].split("</tr>", 1)[0]
    assert 'class="status succeeded"' in row and "encode" in row and "3/3" in row and "torch" in row
    failed_row = dom[dom.index(failed_id) :].split("</tr>", 1)[0]
    assert (
        'class="status failed"' in failed_row
        and "BadRequest" in failed_row
        and "texts: the list is empty" in failed_row
    )
    assert "embedq-test@" in dom and "interactive" in dom  # the session's worker in the fleet
    assert "all-MiniLM-L6-v2" in dom and "(serving)" in dom  # the model it loaded, serving torch
    screenshot = tmp_path / "dashboard.png"
    render(dashboard.url, tmp_path / "profile2", f"--screenshot={screenshot}", "--window-size=1400,1000")
    assert screenshot.stat().st_size > 10_000


def test_the_api_is_read_only_json(eq, db, dashboard) -> None:
    eq.encode(helpers.unique_texts(1)).wait(timeout=60)
    with urllib.request.urlopen(dashboard.url + "api/snapshot", timeout=30) as response:
        data = json.load(response)
    assert data["errors"] == {} and data["jobs"][0]["status"] == "succeeded"
    assert {"jobs", "queues", "fleet", "collections", "classifiers", "models"} <= set(data)
    request = urllib.request.Request(dashboard.url + "api/snapshot", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 501  # nothing on it writes
    refused.value.close()  # the error holds the response's socket
    with urllib.request.urlopen(dashboard.url + "healthz", timeout=30) as response:
        assert response.read() == b"ok\n"
