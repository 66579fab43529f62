"""``AsyncEmbedQ``: the client for async web frameworks (FastAPI, Starlette, aiohttp, Django's async views).

Every call is awaited and none blocks the event loop. Submitting runs the
client's validation, routing and insert in a worker thread (they are short:
a request is checked and one transaction recorded); waiting listens for the
job's ``NOTIFY`` on an ``asyncio`` connection of its own, so a thousand
concurrent waits cost one connection and no thread each. Results are read
in a worker thread (vectors are numpy arrays built from binary COPY).

::

    from api_client.aio import AsyncEmbedQ

    async with AsyncEmbedQ.from_env() as eq:
        job = await eq.encode(["charged twice"])
        vectors = await job.result(timeout=30)

The kinds' methods (``encode``, ``similarity``, ``search``, ``classify``,
``cluster``, ...) take the same arguments as ``EmbedQ``'s and return an
``AsyncJob``; the other methods of ``EmbedQ`` (``collections``,
``create_collection``, ``classifier``...) return what they return there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psycopg

from api_client.client import EmbedQ
from api_client.db import libpq_url
from api_client.errors import JobTimeout
from api_client.kinds import CLIENT_METHODS
from api_client.notify import Notice, parse_notice
from api_client.schemas import JobInfo
from api_client.settings import Settings, get_settings
from api_client.states import NOTIFY_CHANNEL, JobStatus
from api_client.store.jobs import RESULT_CHANNEL

log = logging.getLogger(__name__)

RECHECK_SECONDS = 5.0
"""Even without a notification, a waiter re-reads its job this often."""


class AsyncListener:
    """One ``LISTEN`` connection for all of a client's waits: wakes each job's waiters when it is announced."""

    def __init__(self, database_url: str) -> None:
        self._url = libpq_url(database_url)
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._notices: dict[str, Notice] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def register(self, job_id: str) -> asyncio.Event:
        """An event set whenever ``job_id`` may have changed; register before reading the job."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="embedq-async-listener")
        return event

    def unregister(self, job_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[job_id]

    async def listening(self, timeout: float) -> None:
        """Wait until the connection listens (a caller that goes on without it re-reads its job anyway)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout)

    def take(self, job_id: str) -> Notice | None:
        return self._notices.pop(job_id, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def _wake(self, job_id: str | None) -> None:
        groups = self._waiters.values() if job_id is None else [self._waiters.get(job_id, set())]
        for waiters in list(groups):
            for event in list(waiters):
                event.set()

    def _heard(self, channel: str, payload: str) -> None:
        if channel != RESULT_CHANNEL:
            self._wake(payload)
            return
        job_id = payload.partition(" ")[0]
        if job_id not in self._waiters:
            return
        try:
            self._notices[job_id] = parse_notice(payload)
        except (ValueError, KeyError, TypeError) as exc:  # its waiters read the job instead
            log.warning("unreadable notice of job %s: %s", job_id, exc)
        self._wake(job_id)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name="embedq-async-listener"
                )
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}; LISTEN {RESULT_CHANNEL}")
                    self._listening.set()
                    self._wake(None)
                    backoff = 0.1
                    async for notify in conn.notifies():
                        self._heard(notify.channel, notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep listening whatever happens; waiters re-read their jobs meanwhile
                self._listening.clear()
                self._wake(None)
                log.warning("embedq async listener lost its connection (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


class AsyncJob:
    """One job, awaited: its info, wait, result and cancel, as ``Job``'s."""

    def __init__(self, client: AsyncEmbedQ, job_id: str) -> None:
        self._client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<AsyncJob {self.id}>"

    async def info(self) -> JobInfo:
        return await self._client.run(self._client.sync._info, self.id)

    async def status(self) -> JobStatus:
        return (await self.info()).status

    async def progress(self) -> tuple[int, int]:
        return (await self.info()).progress

    async def wait(self, timeout: float | None = None) -> JobInfo:
        """Until the job is finished (``JobTimeout`` if ``timeout`` seconds pass first); the loop keeps running."""
        return await self._client.wait(self.id, timeout)

    async def result(self, timeout: float | None = None) -> Any:
        """The job's output (as ``Job.result``), its typed error if it failed."""
        info = await self.wait(timeout)
        notice = self._client.listener.take(self.id)
        sync_job = self._client.sync.job_of(self.id)
        return await self._client.run(sync_job.result_of, info, notice)

    async def cancel(self) -> JobStatus:
        return (await self._client.run(self._client.sync._cancel, self.id)).status


class AsyncEmbedQ:
    """Client of one embedq service for code that runs in an event loop."""

    def __init__(self, settings: Settings) -> None:
        self.sync = EmbedQ(settings, listen=False)
        """The blocking client the calls run in threads."""
        self.settings = settings
        self.listener = AsyncListener(settings.require_database())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AsyncEmbedQ:
        """A client from ``EMBEDQ_*`` variables, else ``EMBEDQ_ENV_FILE``, else ``.embedq/env``."""
        return cls(get_settings(environ))

    async def __aenter__(self) -> AsyncEmbedQ:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.listener.close()
        await asyncio.to_thread(self.sync.close)

    async def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in a worker thread."""
        return await asyncio.to_thread(functools.partial(function, *args, **kwargs))

    async def submit(self, kind: str, request: dict[str, Any], **options: Any) -> AsyncJob:
        """As ``EmbedQ.submit``: validated, routed, recorded and sent; refused before any row on bad input."""
        job = await self.run(self.sync.submit, kind, request, **options)
        return AsyncJob(self, job.id)

    async def job(self, job_id: str) -> AsyncJob:
        """The job with this id (``JobNotFound`` if there is none)."""
        return AsyncJob(self, (await self.run(self.sync.job, job_id)).id)

    async def wait(self, job_id: str, timeout: float | None) -> JobInfo:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        event = self.listener.register(job_id)
        try:
            await self.listener.listening(10.0 if timeout is None else min(10.0, timeout))
            while True:
                event.clear()
                info = await self.run(self.sync._info, job_id)
                if info.status.terminal:
                    return info
                remaining = RECHECK_SECONDS if deadline is None else deadline - loop.time()
                if remaining <= 0:
                    raise JobTimeout(
                        f"job {job_id} is still {info.status} after {timeout}s "
                        f"({info.progress[0]}/{info.progress[1]} done); it keeps running"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(RECHECK_SECONDS, remaining))
        finally:
            self.listener.unregister(job_id, event)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The kinds' methods return an ``AsyncJob``; ``EmbedQ``'s other public methods their own result."""
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self.sync, name)
        if not callable(method):
            raise AttributeError(f"{type(self).__name__!r} object has no method {name!r}")

        async def call(*args: Any, **kwargs: Any) -> Any:
            outcome = await self.run(method, *args, **kwargs)
            return AsyncJob(self, outcome.id) if name in CLIENT_METHODS else outcome

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call
