"""The runners of the classifier kinds, which still finish their jobs themselves (they return no ``Outcome``)."""

from __future__ import annotations

from typing import Any

from embedq.worker.classifier_jobs import run_classify, run_train
from embedq.worker.finetune_job import run_fine_tune
from embedq.worker.runners import runs
from embedq.worker.runtime import Runtime
from embedq.worker.store.jobs import Claim
from embedq.worker.triage_job import run_triage

_OWN_FINISH = {
    "train_classifier": run_train,
    "classify": run_classify,
    "triage": run_triage,
    "fine_tune": run_fine_tune,
}


def _adapt(run: Any) -> Any:
    def runner(rt: Runtime, claim: Claim, _request: Any) -> None:
        run(rt, claim)

    return runner


for _kind, _run in _OWN_FINISH.items():
    runs(_kind)(_adapt(_run))
