"""The light client: ``EmbedQ`` submits jobs, ``Job`` follows one.

It never imports torch, faiss, scikit-learn or setfit: a web backend can use
it with nothing but pydantic, celery, psycopg and numpy installed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from api_client import catalog, results, submit
from api_client.backoff import compute_backoff
from api_client.celery_conf import producer_app, thresholds
from api_client.classifiers import ClassifiersMixin
from api_client.collections import CollectionsMixin
from api_client.db import libpq_url, public_url
from api_client.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    JobTimeout,
)
from api_client.job import Job
from api_client.kinds import CLIENT_METHODS, KINDS, kind_of
from api_client.notify import Notice, Notifier
from api_client.requests import Context, check_idempotency_key
from api_client.schemas import JobInfo, Limits
from api_client.settings import Settings, get_settings
from api_client.states import JobStatus
from api_client.store import jobs as jobs_store
from api_client.store import models as models_store
from api_client.store import workers as workers_store
from api_client.store.catalog import StoreCatalog

log = logging.getLogger(__name__)

T = TypeVar("T")

RECHECK_SECONDS = 5.0
"""Even without a notification, a waiter re-reads its job this often."""


def check_running(settings: Settings) -> None:
    """Both servers answer, or the error that says embedq is not running and what was tried.

    A refused connection (nothing listens there: the stack is stopped) fails
    at once; an address that does not answer at all waits ``connect_timeout``.
    """
    broker_url, database_url = settings.require_urls()
    timeout = max(1, round(settings.connect_timeout))
    try:
        psycopg.connect(libpq_url(database_url), connect_timeout=timeout, application_name="embedq-check").close()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseUnavailable(
            f"embedq is not running: PostgreSQL at {public_url(database_url)} does not answer ({reason}); start "
            "the stack with `embedq up`, or check EMBEDQ_DATABASE_URL",
            detail={"database_url": public_url(database_url)},
        ) from exc
    app = producer_app(settings)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # kombu raises the transport's own errors
        raise BrokerUnavailable(
            f"embedq is not running: the broker at {public_url(broker_url)} does not answer ({exc}); start the "
            "stack with `embedq up`, or check EMBEDQ_BROKER_URL",
            detail={"broker_url": public_url(broker_url)},
        ) from exc
    finally:
        app.close()


class EmbedQ(CollectionsMixin, ClassifiersMixin):
    """Client of one embedq service (a broker URL and a database URL)."""

    def __init__(self, settings: Settings, *, listen: bool = True, check: bool = True) -> None:
        _, database_url = settings.require_urls()
        if check:
            check_running(settings)
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
        if listen:  # else it starts with the first wait (``AsyncEmbedQ`` listens with a connection of its own)
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

    def submit(
        self,
        kind: str,
        request: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        lane: str | None = None,
        hardware: str | None = None,
    ) -> Job:
        """Validate, route, record and send a job of ``kind`` (any declared in ``api_client.kinds``).

        ``request`` is the kind's raw request, as a plain Celery client would
        send it; the kinds' own methods (``encode``, ``search``, ``cluster``...)
        build it from keyword arguments. Everything a request can be refused
        for is raised here, before a row or a message exists: its schema, its
        limits and the names it uses (model, collection, classifier).
        """
        spec = kind_of(kind)
        idempotency_key = check_idempotency_key(idempotency_key)
        parsed = spec.parse(request, Context(self.limits, catalog=StoreCatalog(self._run)))
        queue = spec.queue(
            parsed, gpu_alive=self._gpu_alive(), thresholds=thresholds(self.settings), lane=lane, hardware=hardware
        )
        job_id = str(uuid.uuid4())  # chosen here, so a retried insert finds its own row
        created = self._run(
            lambda conn: submit.record(
                conn=conn,
                spec=spec,
                request=parsed,
                queue=queue,
                settings=self.settings,
                idempotency_key=idempotency_key,
                job_id=job_id,
            )
        )
        submit.send(self._producer, created)
        return Job(self, created.info.id)

    _submit = submit

    @staticmethod
    def listed(texts: Any) -> Any:
        """A list from a list or tuple; anything else as it is, for the validator to name."""
        return list(texts) if isinstance(texts, list | tuple) else texts

    def __getattr__(self, name: str) -> Any:
        """Methods declared with the kinds (``client_method``) are set on the class; this is only reached for a
        name that is none of them."""
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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
        """Sleep on the job's notification until it is finished.

        A database that goes away meanwhile (a restart) is waited for until
        the caller's own ``timeout``, re-reading with backoff; only then does
        its ``DatabaseUnavailable`` reach the caller.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        event = self._notifier.register(job_id, timeout=10.0 if timeout is None else min(10.0, timeout))
        failures = 0
        try:
            while True:
                try:
                    notice = self._notifier.notice(job_id)
                    info: JobInfo | None = notice.info if notice is not None else self._info(job_id)
                    failures = 0
                except DatabaseUnavailable as exc:
                    failures += 1
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
                    log.warning("waiting for job %s: %s; retrying", job_id, exc.message)
                    info = None
                if info is not None and info.status.terminal:
                    return info
                remaining = RECHECK_SECONDS if deadline is None else deadline - time.monotonic()
                if remaining <= 0 and info is not None:
                    raise JobTimeout(
                        f"job {job_id} is still {info.status} after {timeout}s "
                        f"({info.progress[0]}/{info.progress[1]} done); it keeps running"
                    )
                pause = min(RECHECK_SECONDS, compute_backoff(failures)) if failures else RECHECK_SECONDS
                event.wait(max(0.0, min(remaining, pause)))
                event.clear()
        finally:
            self._notifier.unregister(job_id, event)

    def job_of(self, job_id: str) -> Job:
        """The ``Job`` of a known id, without reading it."""
        return Job(self, job_id)

    def _result(self, info: JobInfo, notice: Notice | None) -> Any:
        if notice is not None and notice.raw is not None and info.kind == "encode":
            raw = notice.raw  # a small encode job's raw vectors, announced with its row
            if (info.result or {}).get("precision") in ("int8", "uint8"):
                return self._run(lambda conn: results.with_options(conn, info, raw))
            return results.with_options(None, info, raw)
        return self._run(lambda conn: KINDS[info.kind].read_result(conn, info))


for _name, _method in CLIENT_METHODS.items():
    setattr(EmbedQ, _name, _method)
