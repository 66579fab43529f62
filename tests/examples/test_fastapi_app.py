"""examples/fastapi_app.py in this process: its routes with the app's lifespan, concurrent requests on one loop.

The app is served through ``httpx.ASGITransport`` inside its own lifespan, as a server runs it. Starlette's
``TestClient`` would do the same, but with the pinned httpx (no httpx2) it raises a deprecation warning.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from tests import helpers
from tests.examples.running import EXAMPLES

QUERY = "my card was charged twice"
CANDIDATES = ["the app crashes at login", "I was billed two times", "close my account", "refund a double charge"]


@pytest.fixture
def app(example_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """A fresh copy of the example's app, whose lifespan connects to the session's servers."""
    for key, value in example_env.items():
        if key.startswith("EMBEDQ_"):
            monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` while its lifespan runs (startup before the first request, shutdown after the last)."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        yield client


def test_routes_and_embedq_errors(app: FastAPI, eq, unique_name: str) -> None:
    eq.create_collection(unique_name)
    documents = [{"id": f"T-{i}", "text": text} for i, text in enumerate(CANDIDATES)]
    eq.upsert(unique_name, documents).result(timeout=60)

    requests = [
        ("/embed", {"texts": CANDIDATES[:2]}),
        ("/similar", {"query": QUERY, "candidates": CANDIDATES, "top": 3}),
        ("/search", {"collection": unique_name, "query": QUERY, "k": 2}),
        ("/embed", {"texts": ["fine", " "]}),
        ("/search", {"collection": "no-such-collection", "query": QUERY}),
        ("/similar", {"query": QUERY}),
    ]

    async def main() -> list[httpx.Response]:
        async with serving(app) as client:
            return [await client.post(path, json=body) for path, body in requests]

    embedded, similar, found, empty, unknown, malformed = asyncio.run(main())
    assert app.state.eq.sync._pool.closed  # the lifespan closed the client at shutdown
    assert embedded.status_code == 200 and embedded.json()["backend"] == "torch"
    expected = eq.encode(CANDIDATES[:2], normalize=True).result(timeout=60)
    np.testing.assert_allclose(embedded.json()["vectors"], expected, atol=1e-6)

    scores = eq.similarity([QUERY], CANDIDATES).result(timeout=60)[0]
    best = np.argsort(-scores, kind="stable")[:3]
    assert similar.status_code == 200
    assert [hit["text"] for hit in similar.json()] == [CANDIDATES[i] for i in best]
    np.testing.assert_allclose([hit["score"] for hit in similar.json()], scores[best], atol=1e-6)

    hits = eq.search(unique_name, [QUERY], k=2).result(timeout=60)[0]
    assert found.status_code == 200 and found.json() == hits

    assert empty.status_code == 422
    assert empty.json() == {"detail": "texts[1]: the text is empty or only whitespace", "type": "BadRequest"}
    assert unknown.status_code == 404 and "no-such-collection" in unknown.json()["detail"]
    assert malformed.status_code == 422  # FastAPI's own validation: candidates missing


async def _ticks(stop: asyncio.Event) -> list[float]:
    """Gaps between the turns of a coroutine that wants to run every 10 ms: a blocked loop stretches them."""
    gaps, last = [], time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


def test_concurrent_requests_share_the_loop(app: FastAPI, eq) -> None:
    many = helpers.unique_texts(400)  # a few seconds of encoding on the batch lane

    async def main() -> tuple[list[str], list[httpx.Response], list[float]]:
        finished: list[str] = []

        async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
            response = await client.post(path, json=body)
            finished.append(path)
            return response

        async with serving(app) as client:
            stop = asyncio.Event()
            ticker = asyncio.create_task(_ticks(stop))
            responses = await asyncio.gather(
                post(client, "/embed", {"texts": many}),
                post(client, "/similar", {"query": QUERY, "candidates": CANDIDATES}),
            )
            stop.set()
            return finished, list(responses), await ticker

    finished, (embedded, similar), gaps = asyncio.run(main())
    assert embedded.status_code == 200 and np.array(embedded.json()["vectors"]).shape == (400, 384)
    assert similar.status_code == 200 and len(similar.json()) == 4
    assert finished == ["/similar", "/embed"]  # the short request did not wait behind the long one
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f}s"
