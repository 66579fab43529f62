"""One runner per job kind: the function that runs a claimed job of that kind to its end."""

from __future__ import annotations

from api_client.states import JobKind
from worker.encode_job import run_encode
from worker.handling import Runner
from worker.similarity_job import run_paraphrases, run_similarity

RUNNERS: dict[JobKind, Runner] = {
    JobKind.ENCODE: run_encode,
    JobKind.SIMILARITY: run_similarity,
    JobKind.PARAPHRASES: run_paraphrases,
}
