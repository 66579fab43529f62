"""The runners of the collection and classifier kinds, which still finish their jobs themselves.

Each returns no ``Outcome``: it wrote its outputs and final state in its own
fenced transaction (``embedq.worker.lease.finish``).
"""

from __future__ import annotations

from typing import Any

from embedq.worker.classifier_jobs import run_classify, run_train
from embedq.worker.collection_jobs import run_delete, run_upsert
from embedq.worker.finetune_job import run_fine_tune
from embedq.worker.index_jobs import run_build, run_reindex
from embedq.worker.runners import runs
from embedq.worker.runtime import Runtime
from embedq.worker.search_job import run_search
from embedq.worker.store.jobs import Claim
from embedq.worker.triage_job import run_triage

_OWN_FINISH = {
    "upsert": run_upsert,
    "delete": run_delete,
    "build_index": run_build,
    "search": run_search,
    "reindex": run_reindex,
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
