"""``embedq similarity`` and ``embedq paraphrases`` against the session's servers and worker."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
from sentence_transformers.util import paraphrase_mining

from tests import helpers
from tests.integration.test_cli import embedq


def lines(path: Path, texts: list[str]) -> str:
    path.write_text("\n".join(texts) + "\n\n")  # a trailing blank line, as editors leave them
    return str(path)


def test_similarity_writes_the_librarys_matrix(eq, worker_env, st_model, tmp_path: Path) -> None:
    queries, texts = helpers.unique_texts(3), helpers.unique_texts(5)
    out = embedq(
        ["similarity", lines(tmp_path / "q.txt", queries), lines(tmp_path / "t.txt", texts), "--metric", "dot"],
        worker_env,
    )
    assert out.returncode == 0, out.stderr.decode()
    scores = np.load(io.BytesIO(out.stdout))
    model = copy.deepcopy(st_model)
    model.similarity_fn_name = "dot"
    assert scores.shape == (3, 5)
    assert np.abs(scores - model.similarity(model.encode(queries), model.encode(texts)).numpy()).max() < 1e-5

    pairwise = embedq(
        ["similarity", str(tmp_path / "q.txt"), "-", "--pairwise"], worker_env, "\n".join(queries).encode()
    )
    assert pairwise.returncode == 0, pairwise.stderr.decode()
    assert np.load(io.BytesIO(pairwise.stdout)).shape == (3,)


def test_similarity_names_the_file_and_line_of_a_bad_text(eq, worker_env, tmp_path: Path) -> None:
    queries = lines(tmp_path / "q.txt", ["fine", "   ", "fine too"])
    out = embedq(["similarity", queries, lines(tmp_path / "t.txt", ["x"])], worker_env)
    assert out.returncode == 2
    assert out.stderr.decode().strip() == f"embedq: BadRequest: {queries} line 2: the text is empty or only whitespace"
    both_stdin = embedq(["similarity", "-", "-"], worker_env)
    assert both_stdin.returncode == 2 and "cannot both be stdin" in both_stdin.stderr.decode()


def test_paraphrases_prints_pairs_with_line_numbers_and_texts(eq, worker_env, st_model, tmp_path: Path) -> None:
    texts = [
        "I was charged twice for the same order",
        "How do I reset my password?",
        "My card was billed two times for one purchase",
        "Where can I change my password?",
        "The app crashes when I open settings",
    ]
    path = lines(tmp_path / "texts.txt", texts)
    out = embedq(["paraphrases", path, "--threshold", "0.5"], worker_env)
    assert out.returncode == 0, out.stderr.decode()
    rows = [line.split("\t") for line in out.stdout.decode().splitlines()]
    expected = [pair for pair in paraphrase_mining(st_model, texts) if pair[0] >= 0.5]
    assert expected, "the sample should hold pairs above 0.5"
    assert [(int(i), int(j)) for _, i, j, _, _ in rows] == [(i + 1, j + 1) for _, i, j in expected]
    assert all(abs(float(score) - pair[0]) < 1e-4 for (score, *_), pair in zip(rows, expected, strict=True))
    assert rows[0][3:] == [texts[expected[0][1]], texts[expected[0][2]]]

    as_json = embedq(["paraphrases", path, "--threshold", "0.5", "--json"], worker_env)
    assert [(i, j) for _, i, j in json.loads(as_json.stdout)] == [(i, j) for _, i, j in expected]

    job_id = embedq(["paraphrases", path, "--no-wait"], worker_env).stdout.decode().strip()
    result = embedq(["result", job_id, "--timeout", "60"], worker_env)
    assert result.returncode == 0, result.stderr.decode()
    assert len(json.loads(result.stdout)) == len(paraphrase_mining(st_model, texts))
