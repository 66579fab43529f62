"""The cluster kind: group texts into communities (emerging topics among tickets), as the library finds them.

``result()`` is ``sentence_transformers.util.community_detection`` on the
texts' vectors: a list of clusters, largest first, each a list of text
indices led by its central text; a text is in at most one cluster, and texts
in no cluster of at least ``min_size`` are left out. The clusters are stored
in ``job_arrays`` as two int32 arrays (``flatten``), so this kind needs no
table of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from pydantic import Field, ValidationInfo, model_validator

from api_client.backends import Backend
from api_client.kinds import Kind, client_method, declare
from api_client.kinds.encode import check_model_options
from api_client.requests import BatchSize, ModelName, Request, Texts
from api_client.schemas import DEFAULT_MODEL, JobInfo
from api_client.store import arrays as arrays_store

if TYPE_CHECKING:
    from api_client.client import EmbedQ
    from api_client.job import Job


class ClusterRequest(Request):
    """Group ``texts`` whose vectors lie within cosine ``threshold`` into clusters of at least ``min_size``."""

    texts: Texts
    model: ModelName = DEFAULT_MODEL
    threshold: float = Field(0.75, ge=-1.0, le=1.0, allow_inf_nan=False)
    min_size: int = Field(10, ge=1)
    batch_size: BatchSize = 32
    backend: Backend | None = None

    @model_validator(mode="after")
    def _model(self, info: ValidationInfo) -> ClusterRequest:
        check_model_options(self, info)
        return self


def flatten(clusters: list[list[int]]) -> dict[str, np.ndarray]:
    """The ``job_arrays`` of ragged clusters: ``members`` (int32) and ``offsets`` (int32, one more than clusters);
    cluster ``c`` is ``members[offsets[c]:offsets[c + 1]]``."""
    sizes = [len(cluster) for cluster in clusters]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int32)
    members = np.array([i for cluster in clusters for i in cluster], dtype=np.int32)
    return {"members": members, "offsets": offsets}


def read_clusters(conn: psycopg.Connection, info: JobInfo) -> list[list[int]]:
    """A cluster job's clusters, largest first, each a list of text indices."""
    arrays = arrays_store.read_arrays(conn=conn, job_id=info.id)
    members, offsets = arrays["members"], arrays["offsets"]
    return [members[offsets[c] : offsets[c + 1]].tolist() for c in range(len(offsets) - 1)]


CLUSTER = declare(
    Kind(
        name="cluster",
        request=ClusterRequest,
        read_result=read_clusters,
        output="job_arrays: 'members' and 'offsets' (int32): cluster c is members[offsets[c]:offsets[c+1]]",
        text_fields=("texts",),
    )
)


@client_method
def cluster(
    self: EmbedQ,
    texts: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    threshold: float = 0.75,
    min_size: int = 10,
    batch_size: int = 32,
    backend: str | None = None,
    idempotency_key: str | None = None,
    lane: str | None = None,
    hardware: str | None = None,
) -> Job:
    """Queue a cluster job; ``result()`` is a list of clusters, largest first, each a list of text indices.

    The clusters are ``sentence_transformers.util.community_detection`` of the
    texts' vectors with ``threshold`` (cosine) and ``min_size`` (its
    ``min_community_size``): each led by its central text, no text in two of
    them, texts in no cluster of ``min_size`` left out. Texts already encoded
    by the model version cost no forward pass; ``backend`` is as for ``encode``.
    """
    raw: dict[str, Any] = {
        "texts": self.listed(texts),
        "model": model,
        "threshold": threshold,
        "min_size": min_size,
        "batch_size": batch_size,
        "backend": backend,
    }
    return self.submit("cluster", raw, idempotency_key=idempotency_key, lane=lane, hardware=hardware)
