"""Mapping any exception raised while running a job to the error tree."""

from __future__ import annotations

import psycopg
from billiard.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as KombuOperationalError

from api_client.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    EmbedQError,
    InternalError,
    OutOfMemory,
    TimeLimitExceeded,
)
from embedq.cores.memory import is_out_of_memory


def time_limit(exc: BaseException) -> SoftTimeLimitExceeded | None:
    """The soft time limit behind ``exc``: ``exc`` itself, or one that a library caught and raised again as
    another exception (transformers turns one that lands in its tensor conversion into a ``ValueError``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SoftTimeLimitExceeded):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def to_error(exc: BaseException) -> EmbedQError:
    """The embedq error that ``exc`` stands for."""
    if isinstance(exc, EmbedQError):
        return exc
    if time_limit(exc) is not None:
        return TimeLimitExceeded("the job ran past its soft time limit (EMBEDQ_SOFT_TIME_LIMIT)")
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.ConnectionTimeout):
        return DatabaseUnavailable(f"PostgreSQL: {exc}".strip())
    if isinstance(exc, KombuOperationalError | ConnectionError):
        return BrokerUnavailable(f"broker: {exc}".strip())
    if is_out_of_memory(exc):
        return OutOfMemory(f"out of memory: {exc}".strip())
    return InternalError(f"{type(exc).__name__}: {exc}", detail={"exception": type(exc).__name__})
