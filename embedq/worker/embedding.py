"""L2-normalized vectors of texts through the embedding cache: what classifier heads are fitted on and score.

Texts the cache holds cost no forward pass (a re-train on the same texts runs
none). Progress is counted only for the job's own items; label descriptions
and held-out texts are embedded with ``progress=None``.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from api_client.postprocess import unit
from embedq.cores.models import LoadedModel
from embedq.worker.cache import Lookup, cached_vectors
from embedq.worker.lease import Progress
from embedq.worker.runtime import Runtime


class _Uncounted:
    """Progress of work that is not the job's own items: not reported."""

    done = 0

    def beat(self, done: int) -> None:
        self.done = done


def embed(
    rt: Runtime, model: LoadedModel, model_id: int, texts: list[str], *, batch_size: int, progress: Progress | None
) -> tuple[np.ndarray, Lookup]:
    """The unit-length float32 vectors of ``texts``, in order, and the cache lookup that found them."""
    vectors, lookup = cached_vectors(
        rt,
        model=model,
        model_id=model_id,
        texts=texts,
        batch_size=batch_size,
        progress=progress or cast(Progress, _Uncounted()),
    )
    return unit(np.asarray(vectors, dtype=np.float32)), lookup
