"""Celery settings shared by the client's producer app and the worker app."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import SecurityError
from kombu import Exchange, Queue

from api_client.errors import BadRequest, NotConfigured
from api_client.kinds import BY_TASK
from api_client.requests import Context, Limits
from api_client.routing import DEFAULT_QUEUE, QUEUES, Thresholds
from api_client.settings import Settings

log = logging.getLogger(__name__)

PLAIN_QUEUE = "celery"
"""Celery's own default queue: where a plain ``Celery(broker=...).send_task`` without ``queue=`` lands.
Workers consume it too (``embedq worker --no-plain-queue`` turns that off)."""


def route_message(
    name: str,
    _args: Any,
    kwargs: Any,
    _options: Any,
    _task: Any = None,
    *,
    thresholds: Thresholds,
    limits: Limits,
    **_: Any,
) -> dict | None:
    """Celery router for inline requests sent without a queue (``celery -A embedq.worker.app call``).

    An inline request of a known kind is routed by its size, as the client
    routes it (on CPU: this router cannot see the fleet; the sweeper moves a
    job off a queue no live worker consumes). Anything unreadable goes to the
    default queue, where the worker refuses it with a recorded error.
    """
    spec = BY_TASK.get(name)
    if spec is None:
        return None
    try:
        request = spec.parse(kwargs.get("request") if isinstance(kwargs, dict) else None, Context(limits))
    except BadRequest:
        return {"queue": DEFAULT_QUEUE}
    queue = spec.queue(request, gpu_alive=False, thresholds=thresholds)
    return {"queue": queue}


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(settings.interactive_max_items, settings.interactive_max_chars)


def signing_config(settings: Settings) -> dict[str, Any]:
    """With ``EMBEDQ_SIGNING_*``: Celery's auth serializer (JSON signed with an RSA key, sha256), and only signed
    messages accepted; else nothing."""
    if not settings.signs:
        return {}
    return {
        "task_serializer": "auth",
        "accept_content": ["auth"],
        "security_key": str(settings.signing_key),
        "security_certificate": str(settings.signing_cert),
        "security_cert_store": settings.signing_certs,
        "security_digest": "sha256",
    }


def register_signing(settings: Settings) -> None:
    """Register the ``auth`` serializer with this process's key and trusted certificates (kombu's serializer
    registry is one per process), when ``EMBEDQ_SIGNING_*`` is set.

    Raises:
        NotConfigured: the cryptography package is missing, or the key or a certificate cannot be read.
    """
    if not settings.signs:
        return
    try:
        from celery.security.serialization import register_auth
    except ImportError as exc:
        raise NotConfigured(
            "message signing (EMBEDQ_SIGNING_KEY) needs the cryptography package: pip install 'embedq[signing]'"
        ) from exc
    try:
        register_auth(
            Path(str(settings.signing_key)).read_text(),
            None,
            Path(str(settings.signing_cert)).read_text(),
            settings.signing_certs,
            "sha256",
            serializer="json",
        )
    except (OSError, ValueError, SecurityError) as exc:
        raise NotConfigured(f"message signing: cannot load the key or certificates: {exc}") from exc


def celery_config(settings: Settings) -> dict[str, Any]:
    """JSON only (signed with ``EMBEDQ_SIGNING_*``), late acks, prefetch 1, one visibility timeout longer than the
    hard time limit."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A broker blip must not kill running jobs: Postgres fencing makes the
        # redelivery of an unacknowledged message harmless.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_soft_time_limit": settings.soft_time_limit,
        "task_time_limit": settings.time_limit,
        "task_queues": [
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in (*QUEUES, PLAIN_QUEUE)
        ],
        "task_default_queue": DEFAULT_QUEUE,
        "task_create_missing_queues": False,
        "task_routes": (partial(route_message, thresholds=thresholds(settings), limits=Limits.of(settings)),),
        "worker_hijack_root_logger": False,
        # Task events for Flower (`embedq up --flower`, `embedq worker --task-events`): two more
        # broker messages per task, so off unless asked for.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        **signing_config(settings),
    }


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only sends embedq messages (no tasks, no result backend)."""
    app = Celery("embedq-client", set_as_current=False)
    app.conf.update(celery_config(settings))
    register_signing(settings)
    return app


def queue_depth(connection: Any, queue: str) -> int:
    """Messages waiting in ``queue`` on a broker connection (0 when the queue does not exist yet)."""
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:  # the queue does not exist (an empty Redis list is no key at all)
        return 0
    finally:
        try:
            channel.close()
        except Exception:  # a passive declare on a missing AMQP queue closes the channel itself
            log.debug("channel already closed")
