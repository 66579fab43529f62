"""Celery's reports of the messages it discards read as one line each, with no traceback and no body."""

from __future__ import annotations

import io
import logging

from celery.worker.consumer import consumer

from embedq.worker import logs


def logged(template: str, *args: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(logs.TEXT_FORMAT))
    logger = logging.getLogger("celery.worker.consumer.consumer")
    logger.addHandler(handler)
    logs.quiet_libraries()
    try:
        try:
            raise KeyError("embedq.no_such_task")
        except KeyError:
            logger.error(template, *args, exc_info=True)  # as Celery's consumer reports them
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_an_unregistered_task_is_one_line_naming_it() -> None:
    text = logged(consumer.UNKNOWN_TASK_ERROR, KeyError("embedq.no_such_task"), "{'texts': ['secret']}", {}, {})
    assert text.count("\n") == 1, text
    assert "discarded a message for task 'embedq.no_such_task': no such task runs here" in text
    assert "Traceback" not in text and "secret" not in text


def test_a_pickle_body_is_one_line_without_the_body() -> None:
    refused = "Refusing to deserialize untrusted content of type pickle (application/x-python-serialize)"
    text = logged(consumer.MESSAGE_DECODE_ERROR, refused, "application/x-python-serialize", "binary", "{}", "b'\\x80'")
    assert text.count("\n") == 1, text
    assert "whose body may not be decoded (type 'application/x-python-serialize')" in text
    assert "Traceback" not in text and "\\x80" not in text


def test_other_lines_of_the_consumer_are_left_as_they_are() -> None:
    text = logged("consumer: Connection to broker lost. %s", "Trying to re-establish the connection...")
    assert "Connection to broker lost. Trying to re-establish" in text and "Traceback" in text
