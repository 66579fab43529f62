"""``AsyncEmbedQ`` under an event loop: concurrent waits on one listener, and the loop never blocked."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from api_client.aio import AsyncEmbedQ, AsyncJob
from api_client.errors import BadRequest, JobTimeout, UnknownModel
from tests import helpers


async def _ticks(stop: asyncio.Event, every: float = 0.01) -> list[float]:
    """Gaps between ticks of a coroutine that wants to run every ``every`` seconds: what a blocked loop stretches."""
    gaps, last = [], time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(every)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


def test_concurrent_jobs_are_awaited_without_blocking_the_loop(settings, eq, db, st_model) -> None:
    texts = [helpers.unique_texts(3) for _ in range(24)]

    async def main() -> tuple[list[np.ndarray], list[float], int]:
        async with AsyncEmbedQ(settings) as aeq:
            stop = asyncio.Event()
            ticker = asyncio.create_task(_ticks(stop))
            jobs = await asyncio.gather(*(aeq.encode(batch) for batch in texts))
            assert all(isinstance(job, AsyncJob) for job in jobs)
            vectors = await asyncio.gather(*(job.result(timeout=120) for job in jobs))
            stop.set()
            gaps = await ticker
            listening = aeq.listener._task is not None and not aeq.listener._task.done()
            return vectors, gaps, int(listening)

    vectors, gaps, listening = asyncio.run(main())
    assert listening == 1  # one listening connection served every wait
    for batch, got in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(got, st_model.encode(batch), atol=1e-5)
    # The loop kept turning: no gap near the jobs' duration (a blocking wait would stall it for all of them).
    assert gaps and max(gaps) < 0.5 and np.median(gaps) < 0.05


def test_errors_timeouts_and_other_methods(settings, eq, db) -> None:
    async def main() -> None:
        async with AsyncEmbedQ(settings) as aeq:
            with pytest.raises(BadRequest, match=r"texts\[0\]"):
                await aeq.encode([""])
            with pytest.raises(UnknownModel):
                await aeq.encode(["a"], model="no-such-model")
            slow = await aeq.encode(helpers.unique_texts(1500), lane="batch", batch_size=8)
            with pytest.raises(JobTimeout):
                await slow.wait(timeout=0.05)
            assert await slow.cancel() in ("cancelled", "succeeded")
            done = await aeq.encode(["a text"])
            assert (await done.wait(timeout=60)).status == "succeeded" and await done.status() == "succeeded"
            again = await aeq.job(done.id)
            assert (await again.result(timeout=5)).shape == (1, 384)
            assert isinstance(await aeq.collections(), list)  # a method that is no job returns its own result

    asyncio.run(main())
