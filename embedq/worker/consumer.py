"""One consumer process of an ``embedq worker``: ``python -m embedq.worker.consumer [--loglevel L] SPEC``.

``embedq.worker.supervisor`` starts it with the JSON of a ``embedq.worker.layout.Consumer``
and that spec's environment. Before anything else it lowers its priority
(niceness is per thread on Linux and inherited by the threads and processes
started later, so it is set first), and asks the kernel to send it SIGTERM
when its supervisor dies, so a killed ``embedq worker`` leaves no consumer
behind. Then it runs a Celery worker (prefork pool) on the spec's queues;
its presence row (``embedq.worker.presence``) publishes the spec. The interactive
consumer of one process runs the solo pool (``embedq.worker.deadline`` enforces its
time limits).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from embedq.worker.layout import Consumer, set_current


def celery_argv(consumer: Consumer, loglevel: str) -> list[str]:
    """The ``celery worker`` arguments of ``consumer``."""
    return [
        "--quiet",  # no banner: the worker's own log says what each consumer runs
        "worker",
        "--queues",
        ",".join(consumer.queues),
        "--concurrency",
        str(consumer.concurrency),
        "--loglevel",
        loglevel,
        "--hostname",
        consumer.name,
        "--pool",
        consumer.pool,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def stop_with_parent(parent: int) -> None:
    """SIGTERM this process when ``parent`` exits (Linux ``PR_SET_PDEATHSIG``; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(consumer: Consumer, *, loglevel: str, supervisor: int | None) -> None:
    """Run ``consumer``'s Celery worker until it is stopped."""
    if consumer.nice:
        os.nice(consumer.nice)
    if supervisor is not None:
        stop_with_parent(supervisor)
    os.environ.update(consumer.env)
    set_current(consumer)
    from embedq.worker.app import app

    app.worker_main(celery_argv(consumer, loglevel))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m embedq.worker.consumer", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="a embedq.worker.layout.Consumer as JSON")
    parser.add_argument("--loglevel", default="info")
    parser.add_argument("--supervisor", type=int, help="pid of the embedq worker that started this one")
    args = parser.parse_args(argv)
    run(Consumer.from_json(args.spec), loglevel=args.loglevel, supervisor=args.supervisor)


if __name__ == "__main__":
    # Run through the imported module, whose ``current()`` the presence step reads (not ``__main__``'s).
    from embedq.worker import consumer

    consumer.main()
