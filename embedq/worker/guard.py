"""The consumer that no message can stop: anything raised while a message is read as a task discards it.

Celery's consumer catches the errors it expects of a malformed message (an
unknown task name, an invalid or undecodable body) and lets any other
exception end the worker ("Unrecoverable error"): a body that is JSON but not
a task's ``[args, kwargs, embed]`` triple, a task name that is a list, an id
that is an object. Such a message, sent by anyone who can reach the broker,
would stop every consumer, and its redelivery the next worker too. Here it is
logged on one line and rejected (never requeued); connection errors still
reach Celery, which reconnects.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)


class GuardedConsumer(Consumer):
    """Celery's consumer, with each message's reading guarded (``worker_consumer`` of the worker app)."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handler = super().create_task_handler(*args, **kwargs)
        passing = (MemoryError, *self.connection_errors, *self.channel_errors)

        def on_task_received(message: Any) -> Any:
            try:
                return handler(message)
            except passing:
                raise
            except Exception as exc:
                log.error("discarded a message that could not be read as a task: %s: %s", type(exc).__name__, exc)
                if not message.acknowledged:
                    message.reject_log_error(log, self.connection_errors)
                return None

        return on_task_received
