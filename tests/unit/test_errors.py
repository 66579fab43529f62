from __future__ import annotations

import pytest

from api_client import errors


@pytest.mark.parametrize("cls", sorted(errors.ERROR_TYPES.values(), key=lambda c: c.__name__))
def test_every_error_round_trips_through_its_record(cls: type[errors.EmbedQError]) -> None:
    original = cls("something broke", detail={"index": 3})
    record = original.to_record()
    assert record == {
        "type": cls.__name__,
        "message": "something broke",
        "retriable": cls.retriable,
        "detail": {"index": 3},
    }
    rebuilt = errors.from_record(record)
    assert type(rebuilt) is cls
    assert rebuilt.message == "something broke"
    assert rebuilt.detail == {"index": 3}


def test_tree_splits_permanent_and_retriable() -> None:
    assert not errors.BadRequest.retriable
    assert issubclass(errors.LimitExceeded, errors.BadRequest)
    for cls in (errors.BrokerUnavailable, errors.DatabaseUnavailable, errors.OutOfMemory, errors.WorkerLost):
        assert cls.retriable and issubclass(cls, errors.RetriableError)
    for cls in (errors.UnknownModel, errors.JobCancelled, errors.InternalError, errors.AttemptsExhausted):
        assert not cls.retriable and issubclass(cls, errors.PermanentError)


def test_unknown_type_from_a_newer_release_keeps_its_message_and_flag() -> None:
    rebuilt = errors.from_record({"type": "QuotaExceeded", "message": "too many", "retriable": True})
    assert isinstance(rebuilt, errors.RetriableError)
    assert rebuilt.message == "too many"
    assert rebuilt.detail["type"] == "QuotaExceeded"


def test_job_timeout_is_a_timeout_error() -> None:
    assert issubclass(errors.JobTimeout, TimeoutError)


def test_a_soft_time_limit_that_a_library_raised_again_is_still_a_time_limit() -> None:
    """transformers turns an exception landing in its tensor conversion into a ValueError "from" it."""
    from billiard.exceptions import SoftTimeLimitExceeded

    from embedq.worker.errors import time_limit, to_error

    def wrapped(*, explicit: bool) -> BaseException:
        try:
            try:
                raise SoftTimeLimitExceeded()
            except Exception as exc:
                if explicit:
                    raise ValueError("Unable to create tensor") from exc
                raise ValueError("Unable to create tensor")  # noqa: B904 (the implicit chain, as some libraries leave it)
        except ValueError as outer:
            return outer

    for explicit in (True, False):
        exc = wrapped(explicit=explicit)
        assert isinstance(time_limit(exc), SoftTimeLimitExceeded)
        assert isinstance(to_error(exc), errors.TimeLimitExceeded)
    plain = ValueError("Unable to create tensor")
    assert time_limit(plain) is None and isinstance(to_error(plain), errors.InternalError)


def test_a_full_disk_is_the_retriable_disk_full_wherever_it_was_raised() -> None:
    import errno
    import os

    from embedq.worker.errors import to_error

    faiss = RuntimeError(
        "Error in faiss::FileIOWriter: write error in index.faiss: 5 != 61440 (No space left on device)"
    )
    try:
        try:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        except OSError as quota:
            raise ValueError("could not save the head") from quota
    except ValueError as chained:
        wrapped = chained
    for exc in (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), faiss, wrapped):
        error = to_error(exc)
        assert isinstance(error, errors.DiskFull) and error.retriable, exc
        assert "free space under EMBEDQ_ARTIFACT_ROOT" in error.message
    assert isinstance(to_error(OSError(errno.EACCES, "Permission denied")), errors.InternalError)
