"""One runner per job kind: the function that runs a claimed job of that kind to its end."""

from __future__ import annotations

from api_client.states import JobKind
from embedq.worker.classifier_jobs import run_classify, run_train
from embedq.worker.collection_jobs import run_delete, run_upsert
from embedq.worker.encode_job import run_encode
from embedq.worker.finetune_job import run_fine_tune
from embedq.worker.handling import Runner
from embedq.worker.index_jobs import run_build, run_reindex
from embedq.worker.search_job import run_search
from embedq.worker.similarity_job import run_paraphrases, run_similarity
from embedq.worker.triage_job import run_triage

RUNNERS: dict[JobKind, Runner] = {
    JobKind.ENCODE: run_encode,
    JobKind.SIMILARITY: run_similarity,
    JobKind.PARAPHRASES: run_paraphrases,
    JobKind.UPSERT: run_upsert,
    JobKind.DELETE: run_delete,
    JobKind.BUILD_INDEX: run_build,
    JobKind.SEARCH: run_search,
    JobKind.REINDEX: run_reindex,
    JobKind.TRAIN_CLASSIFIER: run_train,
    JobKind.CLASSIFY: run_classify,
    JobKind.TRIAGE: run_triage,
    JobKind.FINE_TUNE: run_fine_tune,
}
