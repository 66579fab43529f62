"""A FastAPI service on embedq's async client: embeddings, ranking by similarity, collection search.

Every embedq call is awaited, so a request that waits for its job never blocks the event loop: one
process serves many requests at once. The client is created when the app starts and closed when it
stops. Run it while embedq is up (`make run` in another shell), from the repository root:

    .venv/bin/pip install uvicorn
    .venv/bin/uvicorn examples.fastapi_app:app --port 8000
    curl -s localhost:8000/similar -H 'content-type: application/json' \\
        -d '{"query": "charged twice", "candidates": ["billed two times", "app crashes"]}'

Bad input gets embedq's own message: 422 for a bad request, 404 for an unknown collection.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api_client.aio import AsyncEmbedQ
from api_client.errors import EmbedQError, JobTimeout, UnknownCollection, UnknownModel

TIMEOUT = 30.0
"""Seconds a request waits for its job."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncEmbedQ.from_env() as eq:
        app.state.eq = eq
        yield


app = FastAPI(title="embedq example", lifespan=lifespan)


def embedq(request: Request) -> AsyncEmbedQ:
    return request.app.state.eq


Client = Annotated[AsyncEmbedQ, Depends(embedq)]


@app.exception_handler(EmbedQError)
async def embedq_error(_request: Request, exc: EmbedQError) -> JSONResponse:
    status = 404 if isinstance(exc, UnknownCollection | UnknownModel) else 503 if exc.retriable else 422
    return JSONResponse({"detail": exc.message, "type": type(exc).__name__}, status_code=status)


@app.exception_handler(JobTimeout)
async def job_timeout(_request: Request, exc: JobTimeout) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=504)


class EmbedBody(BaseModel):
    texts: list[str]
    normalize: bool = True


class SimilarBody(BaseModel):
    query: str
    candidates: list[str]
    top: int = Field(5, ge=1)


class SearchBody(BaseModel):
    collection: str
    query: str
    k: int = Field(5, ge=1)


@app.post("/embed")
async def embed(body: EmbedBody, eq: Client) -> dict[str, Any]:
    """The texts' vectors, in order, and the backend that computed them."""
    job = await eq.encode(body.texts, normalize=body.normalize)
    vectors = await job.result(timeout=TIMEOUT)
    info = await job.info()
    return {"backend": info.result["backend"], "vectors": vectors.tolist()}


@app.post("/similar")
async def similar(body: SimilarBody, eq: Client) -> list[dict[str, Any]]:
    """The ``top`` candidates most similar to the query, best first."""
    job = await eq.similarity([body.query], body.candidates)
    scores = (await job.result(timeout=TIMEOUT))[0]
    best = np.argsort(-scores, kind="stable")[: body.top]
    return [{"text": body.candidates[i], "score": float(scores[i])} for i in best]


@app.post("/search")
async def search(body: SearchBody, eq: Client) -> list[dict[str, Any]]:
    """The ``k`` documents of the collection nearest the query, best first."""
    job = await eq.search(body.collection, [body.query], k=body.k)
    return (await job.result(timeout=TIMEOUT))[0]
