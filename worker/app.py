"""The Celery app of the workers: ``celery -A worker.app ...`` finds it here.

Its settings come from ``get_settings()`` when the app is first configured,
not at import, so importing this module touches no network or environment.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from api_client.celery_conf import celery_config
from api_client.settings import get_settings


def _config() -> dict[str, Any]:
    return celery_config(get_settings())


def create_app() -> Celery:
    """The worker app: embedq's tasks plus the heartbeat-and-sweeper consumer step."""
    from worker.heartbeat import Heartbeat

    celery = Celery("embedq", include=["worker.tasks"])
    celery.add_defaults(_config)
    celery.steps["consumer"].add(Heartbeat)
    return celery


def _process_init(**_: Any) -> None:
    """Starts the preload thread in each new worker process, if asked (never blocks the signal)."""
    import os

    name = os.environ.get("EMBEDQ_PRELOAD")
    if name:
        from worker.runtime import preload

        preload(name)


worker_process_init.connect(_process_init, weak=False)

app = create_app()
