"""The one error tree of embedq.

Every failure a user can see is one of these classes. A job stores its error
as JSON ``{"type", "message", "retriable", "detail"}`` (see ``to_record``);
``from_record`` turns that record back into the same class, so a failed
job's ``Job.result()`` raises what the worker raised::

    EmbedQError
     ├── PermanentError                 retriable = False: retrying cannot help
     │    ├── BadRequest                 malformed input or options
     │    │    ├── LimitExceeded         a configured limit (texts, characters)
     │    │    ├── QueueNotFound         a queue name that is not in the queue table
     │    │    └── WrongKind             a message whose task does not match its job's kind
     │    ├── NotConfigured              no server URLs in the environment or env file
     │    ├── UnknownModel               no such model, or it cannot be loaded
     │    ├── UnknownCollection          no collection of that name
     │    ├── UnknownClassifier          no classifier (or classifier version) of that name
     │    ├── ModelMismatch              vectors of another model version than the collection's
     │    ├── ArtifactCorrupt            a file on disk does not match its manifest's sha256
     │    ├── GateFailed                 a reindex's new index missed its recall gate
     │    ├── JobNotFound                no job with that id
     │    ├── IdempotencyConflict        key reused with a different request
     │    ├── JobCancelled               the job was cancelled
     │    ├── TimeLimitExceeded          the job ran past its time limit
     │    ├── AttemptsExhausted          the job failed or was lost too often
     │    └── InternalError              a bug: an unexpected exception
     └── RetriableError                 retriable = True: a later try may work
          ├── BrokerUnavailable          Redis / RabbitMQ could not be reached
          ├── DatabaseUnavailable        PostgreSQL could not be reached
          ├── OutOfMemory                the model ran out of memory
          ├── DiskFull                   no space left where artifacts are written
          ├── WorkerLost                 the worker died or lost its lease
          └── TimeLimitRetried           a task ran past its time limit after making progress

``JobTimeout`` is not a job error: it is raised by ``Job.wait()`` and
``Job.result()`` when the caller's own timeout passes first (the job keeps
running). It subclasses ``TimeoutError``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from api_client.jsonsafe import json_safe


class EmbedQError(Exception):
    """Base of every embedq error."""

    retriable: ClassVar[bool] = False

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})

    def to_record(self) -> dict[str, Any]:
        """The JSON form stored in ``jobs.error`` (any text in it made storable)."""
        return json_safe(
            {"type": type(self).__name__, "message": self.message, "retriable": self.retriable, "detail": self.detail}
        )


class PermanentError(EmbedQError):
    """Retrying the same request cannot succeed."""


class RetriableError(EmbedQError):
    """A transient failure: the same request may succeed later."""

    retriable = True


class BadRequest(PermanentError):
    """The request is malformed: wrong types, empty input, bad options."""


class LimitExceeded(BadRequest):
    """The request breaks a configured limit; ``detail`` names the limit."""


class QueueNotFound(BadRequest):
    """A queue name that is not in the queue table."""


class WrongKind(BadRequest):
    """A message was sent to the task of another job kind than its job row's."""


class NotConfigured(PermanentError):
    """``EMBEDQ_BROKER_URL`` / ``EMBEDQ_DATABASE_URL`` are set neither in the environment nor in an env file."""


class UnknownModel(PermanentError):
    """The model name resolves to nothing this service can load."""


class UnknownCollection(PermanentError):
    """No collection has this name."""


class UnknownClassifier(PermanentError):
    """No classifier has this name, or it has no such version (or no version yet)."""


class ModelMismatch(PermanentError):
    """The request's model version is not the collection's: a collection holds vectors of one version."""


class ArtifactCorrupt(PermanentError):
    """An artifact file does not match the sha256 its manifest records (``detail["file"]`` names it)."""


class GateFailed(PermanentError):
    """A reindex built an index whose recall missed the gate; the old version stays active."""


class JobNotFound(PermanentError):
    """No job has this id."""


class IdempotencyConflict(PermanentError):
    """The idempotency key was already used for a different request."""


class JobCancelled(PermanentError):
    """The job was cancelled before it finished."""


class TimeLimitExceeded(PermanentError):
    """The job ran past its soft time limit and was stopped."""


class AttemptsExhausted(PermanentError):
    """The job was tried ``max_attempts`` times without finishing."""


class InternalError(PermanentError):
    """An unexpected exception inside the worker (a bug, not bad input)."""


class BrokerUnavailable(RetriableError):
    """The message broker could not be reached."""


class DatabaseUnavailable(RetriableError):
    """PostgreSQL could not be reached."""


class OutOfMemory(RetriableError):
    """The model ran out of memory for this batch."""


class DiskFull(RetriableError):
    """No space (or quota) was left on the disk an artifact was being written to; nothing half-written is kept."""


class WorkerLost(RetriableError):
    """The worker running the job died or lost its lease."""


class TimeLimitRetried(RetriableError):
    """A task ran past its soft time limit after making progress: it is retried and resumes from the cache."""


class JobTimeout(TimeoutError):
    """The caller's wait timed out; the job itself goes on."""


def _subclasses(cls: type[EmbedQError]) -> dict[str, type[EmbedQError]]:
    found = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        found.update(_subclasses(sub))
    return found


ERROR_TYPES: dict[str, type[EmbedQError]] = _subclasses(EmbedQError)


def from_record(record: dict[str, Any]) -> EmbedQError:
    """Rebuild the typed error from a stored ``{type, message, ...}`` record.

    An unknown type name (from a newer release) becomes ``PermanentError`` or
    ``RetriableError`` by its ``retriable`` flag, keeping the message.
    """
    message = str(record.get("message", "unknown error"))
    detail = record.get("detail") or {}
    cls = ERROR_TYPES.get(str(record.get("type")))
    if cls is None:
        cls = RetriableError if record.get("retriable") else PermanentError
        detail = {**detail, "type": record.get("type")}
    return cls(message, detail=detail)
