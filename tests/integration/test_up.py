"""`embedq up`: the whole service from one command, stopped cleanly by SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from api_client.settings import read_env_file
from tests import helpers


def test_up_serves_a_separate_client_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    env = {**helpers.env_without_embedq(), "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "up", "--data-dir", str(data_dir), "--loglevel", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        env_file = data_dir / "env"
        helpers.wait_until(lambda: env_file.exists() or up.poll() is not None, timeout=180, what="the env file")
        assert up.poll() is None, log.read_text()
        values = read_env_file(env_file)
        assert values["EMBEDQ_BROKER_URL"].startswith("redis://")
        assert values["EMBEDQ_DATABASE_URL"].startswith("postgresql://")

        client = subprocess.run(
            [
                sys.executable,
                "-c",
                "from api_client import EmbedQ\n"
                "eq = EmbedQ.from_env()\n"
                "print(eq.encode(['my card was charged twice', 'reset my password']).result(timeout=120).shape)",
            ],
            env={**env, "EMBEDQ_ENV_FILE": str(env_file)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "(2, 384)"
        assert "embedq is up" in log.read_text()
    finally:
        up.send_signal(signal.SIGTERM)
        status = up.wait(timeout=120)
    assert status == 0, log.read_text()[-3000:]
    assert not (data_dir / "env").exists()
    assert helpers.processes_mentioning(str(data_dir)) == []
    assert helpers.processes_mentioning(f"embedq-up-{up.pid}@") == []
