"""The encode kind: texts in, one vector per text out, with the options of ``SentenceTransformer.encode``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, model_validator

from api_client import catalog, results
from api_client.backends import Backend
from api_client.errors import BadRequest, LimitExceeded
from api_client.kinds import Kind, Summary, client_method, declare, summing
from api_client.requests import BatchSize, ModelName, Request, Texts, context_of, text_problem
from api_client.schemas import DEFAULT_MODEL
from api_client.store.jobs import split_list

if TYPE_CHECKING:
    from api_client.client import EmbedQ
    from api_client.job import Job

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "uint8", "binary", "ubinary")


def check_model_options(request: Any, info: ValidationInfo) -> None:
    """What the model version decides: ``truncate_dim`` within its dimension, ``prompt_name`` among its prompts.

    Checked against the catalog when the validation has one and the request
    asks something of the model (or names a model that is not bundled).
    """
    found = context_of(info).catalog
    truncate_dim = getattr(request, "truncate_dim", None)
    prompt_name = getattr(request, "prompt_name", None)
    if found is None or (request.model in catalog.BUNDLED and truncate_dim is None and prompt_name is None):
        return
    row = found.model(request.model)
    if row is None:
        return  # a bundled model no worker has loaded yet: the worker checks the rest
    if truncate_dim is not None and row.dimension and truncate_dim > row.dimension:
        raise BadRequest(
            f"truncate_dim: {truncate_dim} is more than the model's dimension {row.dimension}",
            detail={"field": "truncate_dim", "max": row.dimension},
        )
    prompts = row.config.get("prompts") or {}
    if prompt_name is not None and prompt_name not in prompts:
        raise BadRequest(
            f"prompt_name: model {request.model!r} has no prompt {prompt_name!r} "
            f"(its prompts: {', '.join(sorted(prompts)) or 'none'})",
            detail={"field": "prompt_name"},
        )


class EncodeRequest(Request):
    """Encode ``texts`` with ``model``; the options are ``SentenceTransformer.encode``'s."""

    texts: Texts
    model: ModelName = DEFAULT_MODEL
    normalize: bool = False
    batch_size: BatchSize = 32
    precision: Precision = "float32"
    truncate_dim: int | None = Field(None, ge=1)
    prompt_name: str | None = Field(None, min_length=1)
    prompt: str | None = Field(None, min_length=1)
    backend: Backend | None = None
    """What computes the vectors (``torch`` for exactly the library's floats); ``None``: the model's promoted one."""

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> EncodeRequest:
        limits = context_of(info).limits
        for field in ("prompt", "prompt_name"):
            problem = text_problem(getattr(self, field) or "")
            if problem:
                raise BadRequest(f"{field}: {problem}", detail={"field": field})
        if self.prompt is not None and len(self.prompt) > limits.max_chars_per_text:
            raise LimitExceeded(
                f"prompt: {len(self.prompt):,} characters is over the limit of {limits.max_chars_per_text:,} "
                "(max_chars_per_text)",
                detail={"field": "prompt", "limit": "max_chars_per_text", "max": limits.max_chars_per_text},
            )
        if self.prompt is not None and self.prompt_name is not None:
            raise BadRequest("prompt, prompt_name: give one or the other, not both", detail={"field": "prompt"})
        check_model_options(self, info)
        return self


def _padding_waste(merged: Summary) -> Summary:
    padded = merged.get("padded_tokens")
    if padded:
        merged["padding_waste"] = round(1 - merged.get("tokens", 0) / padded, 4)
    merged.pop("unique", None)  # per chunk: a text in two chunks counts in both
    return merged


ENCODE = declare(
    Kind(
        name="encode",
        request=EncodeRequest,
        read_result=results.read_vectors,
        output="encode_outputs JOIN embeddings USING (model_id, text_sha256), by item",
        text_fields=("texts",),
        split=lambda _conn, request, size: split_list(request, "texts", size),
        merge=summing(
            "count", "cached", "encoded", "tokens", "padded_tokens", "batches", "batch_splits", after=_padding_waste
        ),
    )
)


@client_method
def encode(
    self: EmbedQ,
    texts: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    normalize: bool = False,
    batch_size: int = 32,
    precision: str = "float32",
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
    backend: str | None = None,
    idempotency_key: str | None = None,
    lane: str | None = None,
    hardware: str | None = None,
    normalize_embeddings: bool | None = None,
) -> Job:
    """Queue an encode job and return it at once; ``result()`` gives the vectors in input order.

    Options are those of ``SentenceTransformer.encode`` (``normalize_embeddings``,
    the library's name, is accepted for ``normalize``). Bad input raises
    ``BadRequest``/``LimitExceeded``/``UnknownModel`` before anything is
    queued. With an ``idempotency_key`` already used for the same request,
    the existing job is returned. ``lane`` (``"interactive"`` or
    ``"batch"``) and ``hardware`` (``"cpu"`` or ``"gpu"``) override the
    router's choice; a GPU is used only while a GPU worker is alive. A job
    of more than ``chunk_size`` texts runs as chunk jobs that any worker takes.
    ``backend`` picks what computes the vectors: ``"torch"`` gives exactly the
    library's floats; the default (``None`` or ``"auto"``) is the backend
    promoted for the model version fleet-wide (``embedq models list``).
    """
    if normalize_embeddings is not None:
        normalize = normalize or normalize_embeddings
    raw = {
        "texts": self.listed(texts),
        "model": model,
        "normalize": normalize,
        "batch_size": batch_size,
        "precision": precision,
        "truncate_dim": truncate_dim,
        "prompt_name": prompt_name,
        "prompt": prompt,
        "backend": backend,
    }
    return self.submit("encode", raw, idempotency_key=idempotency_key, lane=lane, hardware=hardware)
