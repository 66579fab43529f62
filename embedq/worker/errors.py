"""Mapping any exception raised while running a job to the error tree."""

from __future__ import annotations

import errno

import psycopg
from billiard.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as KombuOperationalError

from api_client.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    DiskFull,
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


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_WORDS = ("no space left on device", "disk quota exceeded", "storagefull")
"""Lower-case fragments of a full disk's message in libraries that re-raise it as their own error (FAISS's
writer, safetensors)."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a write that found no space left."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return True
        if any(word in str(current).lower() for word in _DISK_FULL_WORDS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


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
    return _exhausted_resource(exc) or InternalError(
        f"{type(exc).__name__}: {exc}", detail={"exception": type(exc).__name__}
    )


def _exhausted_resource(exc: BaseException) -> EmbedQError | None:
    """Memory or disk space that ran out: a later try (a smaller batch, space freed) may work."""
    if is_out_of_memory(exc):
        return OutOfMemory(f"out of memory: {exc}".strip())
    if disk_full(exc):
        return DiskFull(
            f"no space left on the disk an artifact was being written to (free space under EMBEDQ_ARTIFACT_ROOT; "
            f"nothing half-written is kept): {exc}"
        )
    return None
