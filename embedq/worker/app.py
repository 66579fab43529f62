"""The Celery app of the workers: ``celery -A embedq.worker.app ...`` finds it here.

Its settings come from ``get_settings()`` when the app is first configured,
not at import, so importing this module touches no network or environment.
Workers record each task's outcome (the job's summary, never its vectors) in
Celery's database result backend on the embedq database, so a plain Celery
client created with ``backend="db+postgresql+psycopg://..."`` reads it with
``AsyncResult.get()``.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, celeryd_after_setup, worker_process_init, worker_process_shutdown

from api_client.celery_conf import celery_config, register_signing
from api_client.settings import get_settings


def _config() -> dict[str, Any]:
    settings = get_settings()
    config = celery_config(settings)
    config["worker_consumer"] = "embedq.worker.guard:GuardedConsumer"
    if settings.database_url:
        config.update(
            result_backend=settings.result_backend,
            task_ignore_result=False,
            result_extended=True,
            database_engine_options={"pool_pre_ping": True},
        )
    return config


def create_app() -> Celery:
    """The worker app: embedq's tasks plus the presence-and-sweeper consumer step."""
    from embedq.worker.presence import Presence

    # Containers and `embedq up` often run as root; the worker accepts JSON only, which is what the
    # warning is about, so it is noise there.
    warnings.filterwarnings("ignore", message=".*superuser privileges.*")
    celery = Celery("embedq", include=["embedq.worker.tasks"])
    celery.add_defaults(_config)
    register_signing(get_settings())
    celery.steps["consumer"].add(Presence)
    return celery


def _process_init(**_: Any) -> None:
    """Starts the preload thread in each new worker process, if asked (never blocks the signal)."""
    name = get_settings().preload
    if name:
        from embedq.worker.runtime import preload

        preload(name)


worker_process_init.connect(_process_init, weak=False)

app = create_app()


def _process_gone(**_: Any) -> None:
    """A pool process that ends drops its live gauges from the worker's metrics."""
    from embedq.worker.metrics import process_gone

    process_gone(os.getpid())


worker_process_shutdown.connect(_process_gone, weak=False)


def _logging(logger: logging.Logger, **_: Any) -> None:
    """Celery set up a process's logging: the job fields on every line, JSON on request, libraries quiet."""
    from embedq.worker import logs

    logs.decorate(logger.handlers, os.environ.get("EMBEDQ_LOG_FORMAT", "text"))
    logs.quiet_libraries()


after_setup_logger.connect(_logging, weak=False)


def _warnings(**_: Any) -> None:
    """Celery set its own warning filters after its logging signals: ours go back in front."""
    from embedq.worker import logs

    logs.quiet_warnings()


celeryd_after_setup.connect(_warnings, weak=False)
