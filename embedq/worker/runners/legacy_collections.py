"""The runners of the collection kinds, which still finish their jobs themselves (they return no ``Outcome``)."""

from __future__ import annotations

from typing import Any

from embedq.worker.collection_jobs import run_delete, run_upsert
from embedq.worker.index_jobs import run_build, run_reindex
from embedq.worker.runners import runs
from embedq.worker.runtime import Runtime
from embedq.worker.search_job import run_search
from embedq.worker.store.jobs import Claim

_OWN_FINISH = {
    "upsert": run_upsert,
    "delete": run_delete,
    "build_index": run_build,
    "search": run_search,
    "reindex": run_reindex,
}


def _adapt(run: Any) -> Any:
    def runner(rt: Runtime, claim: Claim, _request: Any) -> None:
        run(rt, claim)

    return runner


for _kind, _run in _OWN_FINISH.items():
    runs(_kind)(_adapt(_run))
