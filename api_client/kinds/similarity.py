"""The similarity and paraphrases kinds: texts encoded through the cache, scored as sentence-transformers does.

Both score with one of the library's four similarity functions. Limits bound
the output: a similarity matrix holds at most ``max_similarity_cells``
scores, a paraphrase job returns at most ``max_pairs`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, model_validator

from api_client import results
from api_client.backends import Backend
from api_client.errors import BadRequest, LimitExceeded
from api_client.kinds import Kind, client_method, declare
from api_client.kinds.encode import check_model_options
from api_client.requests import BatchSize, ModelName, Request, Texts, TopK, context_of
from api_client.schemas import DEFAULT_MODEL

if TYPE_CHECKING:
    from api_client.client import EmbedQ
    from api_client.job import Job

Metric = Literal["cosine", "dot", "euclidean", "manhattan"]
METRICS: tuple[str, ...] = ("cosine", "dot", "euclidean", "manhattan")


class SimilarityRequest(Request):
    """Score every query against every text (``[len(queries), len(texts)]``), or pair by pair."""

    queries: Texts
    texts: Texts
    model: ModelName = DEFAULT_MODEL
    metric: Metric = "cosine"
    pairwise: bool = False
    batch_size: BatchSize = 32
    backend: Backend | None = None

    @model_validator(mode="after")
    def _fits(self, info: ValidationInfo) -> SimilarityRequest:
        limits = context_of(info).limits
        queries, texts = self.queries, self.texts
        if self.pairwise and len(queries) != len(texts):
            raise BadRequest(
                f"pairwise: queries and texts must have the same length, got {len(queries)} and {len(texts)}",
                detail={"field": "pairwise"},
            )
        cells = len(queries) if self.pairwise else len(queries) * len(texts)
        if cells > limits.max_similarity_cells:
            raise LimitExceeded(
                f"queries x texts: {len(queries):,} x {len(texts):,} = {cells:,} scores is over the limit of "
                f"{limits.max_similarity_cells:,} (max_similarity_cells); split the queries into several jobs",
                detail={"field": "queries", "limit": "max_similarity_cells", "max": limits.max_similarity_cells},
            )
        check_model_options(self, info)
        return self


class ParaphrasesRequest(Request):
    """Find the most similar pairs among ``texts``, as ``sentence_transformers.util.paraphrase_mining``."""

    texts: Texts
    model: ModelName = DEFAULT_MODEL
    metric: Metric = "cosine"
    top_k: TopK = 100
    max_pairs: int = Field(500_000, ge=1)
    threshold: float | None = None
    batch_size: BatchSize = 32
    backend: Backend | None = None

    @model_validator(mode="after")
    def _fits(self, info: ValidationInfo) -> ParaphrasesRequest:
        limits = context_of(info).limits
        if len(self.texts) < 2:
            raise BadRequest("texts: paraphrase mining needs at least two texts", detail={"field": "texts"})
        if self.max_pairs > limits.max_pairs:
            raise LimitExceeded(
                f"max_pairs: {self.max_pairs:,} is over the limit of {limits.max_pairs:,} (max_pairs)",
                detail={"field": "max_pairs", "limit": "max_pairs", "max": limits.max_pairs},
            )
        check_model_options(self, info)
        return self


SIMILARITY = declare(
    Kind(
        name="similarity",
        request=SimilarityRequest,
        read_result=results.read_scores,
        output="job_arrays: 'scores' (float32, [queries, texts], or [n] when pairwise)",
        text_fields=("queries", "texts"),
    )
)
PARAPHRASES = declare(
    Kind(
        name="paraphrases",
        request=ParaphrasesRequest,
        read_result=results.read_pairs,
        output="job_arrays: 'scores' (float32 [pairs]) and 'pairs' (int32 [pairs, 2]), best first",
        text_fields=("texts",),
    )
)


@client_method
def similarity(
    self: EmbedQ,
    queries: Sequence[str],
    texts: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    metric: str = "cosine",
    pairwise: bool = False,
    batch_size: int = 32,
    backend: str | None = None,
    idempotency_key: str | None = None,
    lane: str | None = None,
    hardware: str | None = None,
) -> Job:
    """Queue a similarity job; ``result()`` is float32 ``[len(queries), len(texts)]``, or ``[n]`` when pairwise.

    Scores equal ``SentenceTransformer.similarity`` (``similarity_pairwise``
    with ``pairwise=True``) with ``metric`` as the model's similarity
    function: ``cosine``, ``dot``, ``euclidean`` or ``manhattan``. Texts
    already encoded by this model version cost no forward pass. ``backend``
    is as for ``encode``.
    """
    raw = {
        "queries": self.listed(queries),
        "texts": self.listed(texts),
        "model": model,
        "metric": metric,
        "pairwise": pairwise,
        "batch_size": batch_size,
        "backend": backend,
    }
    return self.submit("similarity", raw, idempotency_key=idempotency_key, lane=lane, hardware=hardware)


@client_method
def paraphrases(
    self: EmbedQ,
    texts: Sequence[str],
    *,
    threshold: float | None = None,
    top_k: int = 100,
    max_pairs: int = 500_000,
    model: str = DEFAULT_MODEL,
    metric: str = "cosine",
    batch_size: int = 32,
    backend: str | None = None,
    idempotency_key: str | None = None,
    lane: str | None = None,
    hardware: str | None = None,
) -> Job:
    """Queue a paraphrase-mining job; ``result()`` is ``[(score, i, j), ...]``, best first.

    The pairs are those of ``sentence_transformers.util.paraphrase_mining``
    with the same ``top_k`` and ``max_pairs``, then only those scoring at
    least ``threshold`` (when given).
    """
    raw = {
        "texts": self.listed(texts),
        "threshold": threshold,
        "top_k": top_k,
        "max_pairs": max_pairs,
        "model": model,
        "metric": metric,
        "batch_size": batch_size,
        "backend": backend,
    }
    return self.submit("paraphrases", raw, idempotency_key=idempotency_key, lane=lane, hardware=hardware)
