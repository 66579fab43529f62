"""The light client: ``EmbedQ`` submits jobs, ``Job`` follows one.

It never imports torch, faiss, scikit-learn or setfit: a web backend can use
it with nothing but pydantic, celery, psycopg and numpy installed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from api_client import catalog
from api_client.celery_conf import TASK_NAMES, producer_app, thresholds
from api_client.db import libpq_url
from api_client.errors import (
    BadRequest,
    DatabaseUnavailable,
    JobCancelled,
    JobTimeout,
    UnknownModel,
    from_record,
)
from api_client.notify import Notifier
from api_client.postprocess import quantize, truncate_and_normalize
from api_client.routing import route
from api_client.schemas import DEFAULT_MODEL, EncodeRequest, JobInfo, Limits, parse_encode_request
from api_client.settings import Settings, get_settings
from api_client.states import JobKind, JobStatus
from api_client.store import embeddings as embeddings_store
from api_client.store import jobs as jobs_store
from api_client.store import models as models_store
from api_client.store import workers as workers_store

log = logging.getLogger(__name__)

T = TypeVar("T")

RECHECK_SECONDS = 5.0
"""Even without a notification, a waiter re-reads its job this often."""


class EmbedQ:
    """Client of one embedq service (a broker URL and a database URL)."""

    def __init__(self, settings: Settings) -> None:
        _, database_url = settings.require_urls()
        self.settings = settings
        self.limits = Limits.of(settings)
        self._conninfo = libpq_url(database_url)
        self._pool = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, "application_name": "embedq-client"},
            min_size=1,
            max_size=8,
            open=True,
            name="embedq-client",
            timeout=settings.connect_timeout,
        )
        self._producer = producer_app(settings)
        self._notifier = Notifier(database_url)
        self._notifier.start()
        self._gpu_checked = (0.0, False)
        self._gpu_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmbedQ:
        """A client from ``EMBEDQ_*`` variables, else ``EMBEDQ_ENV_FILE``, else ``.embedq/env``."""
        return cls(get_settings(environ))

    def _run(self, operation: Callable[[psycopg.Connection], T]) -> T:
        """``operation(conn)`` on a pooled connection; failures surface as ``DatabaseUnavailable``.

        Every client operation is idempotent (job ids are chosen before the
        insert), so one that fails on a connection that died with its server,
        after a PostgreSQL restart, is run once more on a fresh connection.
        """
        for attempt in (1, 2):
            try:
                with self._pool.connection() as conn:
                    return operation(conn)
            except PoolTimeout as exc:
                raise DatabaseUnavailable(f"PostgreSQL: {self._why_unreachable() or exc}") from exc
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise DatabaseUnavailable(f"PostgreSQL: {exc}".strip()) from exc
                self._pool.check()  # drop the other pooled connections that died too
        raise AssertionError("unreachable")

    def _why_unreachable(self) -> str | None:
        """The driver's own reason a new connection fails now, for the error message."""
        try:
            psycopg.connect(self._conninfo, connect_timeout=max(1, int(self.settings.connect_timeout))).close()
        except psycopg.Error as exc:
            return str(exc).strip()
        return None

    def close(self) -> None:
        self._notifier.close()
        self._pool.close()
        self._producer.close()

    def __enter__(self) -> EmbedQ:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode(
        self,
        texts: Sequence[str],
        *,
        model: str = DEFAULT_MODEL,
        normalize: bool = False,
        batch_size: int = 32,
        precision: str = "float32",
        truncate_dim: int | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        lane: str | None = None,
        hardware: str | None = None,
    ) -> Job:
        """Queue an encode job and return it at once.

        Options are those of ``SentenceTransformer.encode``. Bad input raises
        ``BadRequest``/``LimitExceeded``/``UnknownModel`` before anything is
        queued. With an ``idempotency_key`` already used for the same request,
        the existing job is returned.
        """
        raw = {
            "texts": list(texts) if isinstance(texts, list | tuple) else texts,
            "model": model,
            "normalize": normalize,
            "batch_size": batch_size,
            "precision": precision,
            "truncate_dim": truncate_dim,
            "prompt_name": prompt_name,
            "prompt": prompt,
        }
        request = parse_encode_request(raw, self.limits)
        self._check_model(request)
        queue = route(
            kind=JobKind.ENCODE,
            n_items=len(request.texts),
            n_chars=sum(len(text) for text in request.texts),
            gpu_alive=self._gpu_alive(),
            lane=lane,
            hardware=hardware,
            thresholds=thresholds(self.settings),
        )
        job_id = str(uuid.uuid4())  # chosen here, so a retried insert finds its own row
        info, created = self._run(
            lambda conn: jobs_store.create_job(
                conn=conn,
                kind=JobKind.ENCODE,
                queue=queue,
                request=request.model_dump(),
                total=len(request.texts),
                max_attempts=self.settings.max_attempts,
                idempotency_key=idempotency_key,
                job_id=job_id,
            )
        )
        if created or info.status == JobStatus.QUEUED:
            self._send(info.id, JobKind.ENCODE, info.queue)
        return Job(self, info.id)

    def job(self, job_id: str) -> Job:
        """The job with this id (``JobNotFound`` if there is none)."""
        return Job(self, self._info(str(job_id)).id)

    def jobs(self, *, status: JobStatus | str | None = None, limit: int = 20) -> list[JobInfo]:
        """The newest jobs, optionally only those in one status."""
        return self._run(
            lambda conn: jobs_store.list_jobs(conn=conn, status=JobStatus(status) if status else None, limit=limit)
        )

    def models(self) -> list[str]:
        """Model names a job may ask for: the bundled ones and every registered one."""
        return sorted(set(catalog.BUNDLED) | set(self._run(lambda conn: models_store.model_names(conn=conn))))

    def _send(self, job_id: str, kind: JobKind, queue: str) -> None:
        try:
            self._producer.send_task(TASK_NAMES[kind], kwargs={"job_id": job_id}, queue=queue, task_id=job_id)
        except Exception as exc:  # the row is committed: the sweeper re-sends it once the broker is back
            log.warning("job %s is recorded but its message could not be sent (%s); it will be re-sent", job_id, exc)

    def _check_model(self, request: EncodeRequest) -> None:
        if request.model in catalog.BUNDLED and request.truncate_dim is None and request.prompt_name is None:
            return
        row = self._run(lambda conn: models_store.find_model(conn=conn, name=request.model))
        if row is None and request.model not in catalog.BUNDLED:
            known = ", ".join(self.models())
            raise UnknownModel(
                f"model: unknown model {request.model!r}; known models: {known} "
                "(register a local sentence-transformers folder with `embedq models add NAME PATH`)",
                detail={"field": "model", "model": request.model},
            )
        if row is None:
            return  # a bundled model not used yet: the worker checks the rest
        if request.truncate_dim is not None and row.dimension and request.truncate_dim > row.dimension:
            raise BadRequest(
                f"truncate_dim: {request.truncate_dim} is more than the model's dimension {row.dimension}",
                detail={"field": "truncate_dim", "max": row.dimension},
            )
        prompts = row.config.get("prompts") or {}
        if request.prompt_name is not None and request.prompt_name not in prompts:
            raise BadRequest(
                f"prompt_name: model {request.model!r} has no prompt {request.prompt_name!r} "
                f"(its prompts: {', '.join(sorted(prompts)) or 'none'})",
                detail={"field": "prompt_name"},
            )

    def _gpu_alive(self) -> bool:
        with self._gpu_lock:
            checked_at, alive = self._gpu_checked
            if time.monotonic() - checked_at < 10.0:
                return alive
            alive = self._run(lambda conn: workers_store.gpu_alive(conn=conn, within=self.settings.worker_alive))
            self._gpu_checked = (time.monotonic(), alive)
            return alive

    # Used by Job.
    def _info(self, job_id: str) -> JobInfo:
        return self._run(lambda conn: jobs_store.get_job(conn=conn, job_id=job_id))

    def _cancel(self, job_id: str) -> JobInfo:
        return self._run(lambda conn: jobs_store.cancel_job(conn=conn, job_id=job_id))

    def _wait(self, job_id: str, timeout: float | None) -> JobInfo:
        deadline = None if timeout is None else time.monotonic() + timeout
        event = self._notifier.register(job_id, timeout=10.0 if timeout is None else min(10.0, timeout))
        try:
            while True:
                info = self._info(job_id)
                if info.status.terminal:
                    return info
                remaining = RECHECK_SECONDS if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeout(
                        f"job {job_id} is still {info.status} after {timeout}s "
                        f"({info.progress[0]}/{info.progress[1]} done); it keeps running"
                    )
                event.wait(min(remaining, RECHECK_SECONDS))
                event.clear()
        finally:
            self._notifier.unregister(job_id, event)

    def _vectors(self, info: JobInfo) -> np.ndarray:
        summary: dict[str, Any] = info.result or {}

        def read(conn: psycopg.Connection) -> tuple[np.ndarray, np.ndarray | None]:
            raw = embeddings_store.read_job_vectors(conn=conn, job_id=info.id, count=summary["count"])
            if summary["precision"] not in ("int8", "uint8"):
                return raw, None
            ranges = models_store.get_ranges(
                conn=conn, model_id=summary["model_id"], dimension=summary["dimension"], normalized=summary["normalize"]
            )
            return raw, ranges

        raw, ranges = self._run(read)
        vectors = truncate_and_normalize(raw, truncate_dim=summary["truncate_dim"], normalize=summary["normalize"])
        return quantize(vectors, summary["precision"], ranges)


class Job:
    """One job: its id, its live status and progress, and its result."""

    def __init__(self, client: EmbedQ, job_id: str) -> None:
        self._client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def info(self) -> JobInfo:
        """A fresh snapshot of the job row."""
        return self._client._info(self.id)

    @property
    def status(self) -> JobStatus:
        return self.info().status

    @property
    def progress(self) -> tuple[int, int]:
        """``(done, total)`` items."""
        return self.info().progress

    @property
    def error(self) -> dict[str, Any] | None:
        return self.info().error

    def wait(self, timeout: float | None = None) -> JobInfo:
        """Block until the job is finished; ``JobTimeout`` if ``timeout`` seconds pass first."""
        return self._client._wait(self.id, timeout)

    def cancel(self) -> JobStatus:
        """Cancel the job if it is queued or running; returns the status after the attempt."""
        return self._client._cancel(self.id).status

    def result(self, timeout: float | None = None) -> np.ndarray:
        """The job's output: float32 ``[n, dim]`` (or int8/uint8 by precision), in input order.

        Raises the job's typed error if it failed, ``JobCancelled`` if it was
        cancelled, ``JobTimeout`` if ``timeout`` passes first.
        """
        info = self.wait(timeout)
        if info.status == JobStatus.FAILED:
            raise from_record(info.error or {"type": "InternalError", "message": "failed without an error record"})
        if info.status == JobStatus.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled", detail={"job_id": self.id})
        return self._client._vectors(info)
