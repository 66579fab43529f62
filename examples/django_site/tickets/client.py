"""One embedq client per process, created on first use and closed when the process exits."""

import atexit
import functools
import threading

from api_client import EmbedQ
from django.conf import settings

_lock = threading.Lock()


@functools.cache
def _create() -> EmbedQ:
    client = EmbedQ(settings.EMBEDQ)
    atexit.register(client.close)
    return client


def embedq() -> EmbedQ:
    """The process's client (thread-safe: a threaded server's requests share it)."""
    with _lock:
        return _create()
