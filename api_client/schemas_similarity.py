"""Request schemas of the similarity and paraphrase jobs.

Both take texts, encode them through the embedding cache and score them with
one of sentence-transformers' four similarity functions. Limits bound the
output: a similarity matrix holds at most ``max_similarity_cells`` scores, a
paraphrase job returns at most ``max_pairs`` pairs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api_client.backends import Backend
from api_client.errors import BadRequest, LimitExceeded
from api_client.schemas import (
    DEFAULT_MODEL,
    Limits,
    check_batch_size,
    check_model_name,
    check_texts,
    parse_options,
    require_object,
)

Metric = Literal["cosine", "dot", "euclidean", "manhattan"]
METRICS: tuple[str, ...] = ("cosine", "dot", "euclidean", "manhattan")


class _ScoreOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=200)
    metric: Metric = "cosine"
    batch_size: int = Field(32, ge=1)
    backend: Backend | None = None


class SimilarityOptions(_ScoreOptions):
    """Options of a similarity job: as ``SentenceTransformer.similarity`` (or ``similarity_pairwise``)."""

    pairwise: bool = False


class SimilarityRequest(SimilarityOptions):
    """Score every query against every text (``[len(queries), len(texts)]``), or pair by pair."""

    queries: list[str]
    texts: list[str]


class ParaphraseOptions(_ScoreOptions):
    """Options of a paraphrase job: as ``sentence_transformers.util.paraphrase_mining``."""

    top_k: int = Field(100, ge=1)
    max_pairs: int = Field(500_000, ge=1)
    threshold: float | None = None


class ParaphrasesRequest(ParaphraseOptions):
    """Find the most similar pairs among ``texts``."""

    texts: list[str]


def parse_similarity_request(raw: Any, limits: Limits) -> SimilarityRequest:
    """Validate a raw similarity request; ``BadRequest``/``LimitExceeded`` on anything wrong."""
    raw = require_object(raw, "queries", "texts")
    queries = check_texts(raw["queries"], limits, "queries")
    texts = check_texts(raw["texts"], limits, "texts")
    options = parse_options({k: v for k, v in raw.items() if k not in ("queries", "texts")}, SimilarityOptions)
    check_batch_size(options.batch_size, limits)
    if options.pairwise and len(queries) != len(texts):
        raise BadRequest(
            f"pairwise: queries and texts must have the same length, got {len(queries)} and {len(texts)}",
            detail={"field": "pairwise"},
        )
    cells = len(queries) if options.pairwise else len(queries) * len(texts)
    if cells > limits.max_similarity_cells:
        raise LimitExceeded(
            f"queries x texts: {len(queries):,} x {len(texts):,} = {cells:,} scores is over the limit of "
            f"{limits.max_similarity_cells:,} (max_similarity_cells); split the queries into several jobs",
            detail={"field": "queries", "limit": "max_similarity_cells", "max": limits.max_similarity_cells},
        )
    fields = {**options.model_dump(), "model": check_model_name(options.model)}
    return SimilarityRequest.model_construct(**fields, queries=queries, texts=texts)


def parse_paraphrases_request(raw: Any, limits: Limits) -> ParaphrasesRequest:
    """Validate a raw paraphrase request; ``BadRequest``/``LimitExceeded`` on anything wrong."""
    raw = require_object(raw, "texts")
    texts = check_texts(raw["texts"], limits, "texts")
    options = parse_options({k: v for k, v in raw.items() if k != "texts"}, ParaphraseOptions)
    check_batch_size(options.batch_size, limits)
    if len(texts) < 2:
        raise BadRequest("texts: paraphrase mining needs at least two texts", detail={"field": "texts"})
    if options.max_pairs > limits.max_pairs:
        raise LimitExceeded(
            f"max_pairs: {options.max_pairs:,} is over the limit of {limits.max_pairs:,} (max_pairs)",
            detail={"field": "max_pairs", "limit": "max_pairs", "max": limits.max_pairs},
        )
    fields = {**options.model_dump(), "model": check_model_name(options.model)}
    return ParaphrasesRequest.model_construct(**fields, texts=texts)
