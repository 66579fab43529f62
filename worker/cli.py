"""The ``embedq`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api_client.celery_conf import PLAIN_QUEUE
from api_client.errors import BadRequest, EmbedQError, IdempotencyConflict, JobCancelled, JobNotFound, UnknownModel
from api_client.routing import LANES, queue_name
from api_client.schemas import DEFAULT_MODEL, PRECISIONS
from api_client.settings import get_settings

EXIT_FAILED = 1
EXIT_USAGE = 2
INPUT_ERRORS = (BadRequest, UnknownModel, JobNotFound, IdempotencyConflict)
"""Errors caused by what the caller asked for: exit status 2, like a usage error."""

DESCRIPTION = """\
embedq: a job service for sentence-transformers workloads.

Servers come from EMBEDQ_BROKER_URL and EMBEDQ_DATABASE_URL, else from the env
file named by EMBEDQ_ENV_FILE, else from .embedq/env (written by `embedq up`).
"""


def _client() -> Any:
    from api_client import EmbedQ

    return EmbedQ.from_env()


def cmd_up(args: argparse.Namespace) -> int:
    from worker.stack import up

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return up(
        data_dir=args.data_dir, concurrency=args.concurrency, loglevel=args.loglevel, preload=args.preload or None
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from api_client.db import connect, require_schema
    from worker.hardware import detect

    hardware = detect(args.hardware)
    lanes = [lane.strip() for lane in args.lanes.split(",") if lane.strip()]
    queues = [queue_name(hardware, lane) for lane in lanes]
    if not args.no_plain_queue:
        queues.append(PLAIN_QUEUE)
    _, database_url = get_settings().require_urls()
    with connect(database_url) as conn:
        require_schema(conn)
    os.environ.update({"EMBEDQ_HARDWARE": hardware, "EMBEDQ_CONCURRENCY": str(args.concurrency)})
    if args.no_sweeper:
        os.environ["EMBEDQ_SWEEPER"] = "0"
    if args.preload:
        os.environ["EMBEDQ_PRELOAD"] = args.preload
    from worker.app import app

    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(args.concurrency),
            "--loglevel",
            args.loglevel,
            "--hostname",
            args.name,
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import migrations

    url = args.database_url or get_settings().require_database()
    if args.downgrade:
        migrations.downgrade(url, args.downgrade)
    else:
        migrations.upgrade(url, args.revision)
    print(f"database at revision {migrations.current(url) or 'base (empty)'}")
    return 0


def read_lines(data: str) -> list[str]:
    """One text per line: split on ``\n`` only (a ``\r`` before it is dropped, a final newline ends the
    last line), so line ``i + 1`` is always ``texts[i]``, whatever other separators a text holds."""
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from worker.progress import wait_with_progress

    output = sys.stdout.buffer if args.output in (None, "-") else open(args.output, "wb")  # noqa: SIM115
    if output is sys.stdout.buffer and sys.stdout.isatty():
        print(
            "embedq: refusing to write binary .npy to a terminal; redirect stdout or use --output FILE", file=sys.stderr
        )
        return EXIT_USAGE
    source = sys.stdin.buffer if args.input in (None, "-") else open(args.input, "rb")  # noqa: SIM115
    with source:
        data = source.read()
    try:
        texts = read_lines(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadRequest(f"input: line {line} is not valid UTF-8", detail={"field": "input", "line": line}) from exc
    with _client() as eq:
        job = eq.encode(
            texts,
            model=args.model,
            normalize=args.normalize,
            batch_size=args.batch_size,
            precision=args.precision,
            truncate_dim=args.truncate_dim,
            prompt_name=args.prompt_name,
            prompt=args.prompt,
            idempotency_key=args.idempotency_key,
        )
        print(f"job {job.id}", file=sys.stderr)
        if args.no_wait:
            return 0
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        wait_with_progress(job, timeout=args.timeout, show=show)
        vectors = job.result(timeout=0)
    with output:
        np.save(output, vectors)
    return 0


def _print_jobs(jobs: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([job.as_json() for job in jobs], indent=2))
        return
    print(f"{'id':36}  {'kind':6}  {'status':9}  {'progress':>13}  {'queue':22}  created")
    for job in jobs:
        done, total = job.progress
        error = f"  {job.error['type']}" if job.error else ""
        print(
            f"{job.id:36}  {job.kind:6}  {job.status:9}  {f'{done}/{total}':>13}  {job.queue:22}  "
            f"{job.created_at:%Y-%m-%d %H:%M:%S}{error}"
        )


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client() as eq:
        _print_jobs(eq.jobs(status=args.status, limit=args.limit), args.json)
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    with _client() as eq:
        print(json.dumps(eq.job(args.id).info().as_json(), indent=2))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client() as eq:
        status = eq.job(args.id).cancel()
    print(f"job {args.id} is {status}")
    return 0


def cmd_sweep(_args: argparse.Namespace) -> int:
    from api_client.db import connect
    from worker.app import app
    from worker.sweeper import sweep

    settings = get_settings()
    with connect(settings.require_urls()[1]) as conn:
        report = sweep(conn=conn, app=app, settings=settings)
    print(json.dumps(dataclasses.asdict(report)))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from api_client.db import connect

    database_url = get_settings().require_database()
    if args.action == "add":
        from tasks.models import ModelRegistry
        from worker.runtime import record_model

        path = Path(args.path).resolve()
        if not path.is_dir():
            raise SystemExit(f"embedq: {path} is not a folder")
        loaded = ModelRegistry().load(args.name, path)
        with connect(database_url) as conn:
            row = record_model(conn, args.name, path, loaded, dtype="float32", source="registered", register=True)
        print(f"registered {row.name} version {row.version} ({row.dimension} dims) at {row.artifact_path}")
        return 0
    with _client() as eq:
        for name in eq.models():
            print(name)
    return 0


def _encode_parser(sub: Any) -> None:
    p = sub.add_parser(
        "encode",
        help="encode texts (one per line) into a .npy file",
        description="Read texts, one per line, from stdin (or --input), run an encode job, and write the "
        "vectors as a .npy array to stdout (or --output). Shows a progress bar on a terminal.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    p.add_argument("--normalize", action="store_true", help="L2-normalize the vectors")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help="output precision")
    p.add_argument("--truncate-dim", type=int, help="keep only the first N dimensions")
    p.add_argument("--prompt-name", help="name of a prompt stored with the model")
    p.add_argument("--prompt", help="text to prepend to every input")
    p.add_argument("--idempotency-key", help="submitting the same key again returns the same job")
    p.add_argument("--input", help="read texts from this file instead of stdin")
    p.add_argument("--output", help="write the .npy here instead of stdout")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    p.set_defaults(func=cmd_encode)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedq", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "up",
        help="run the whole service on this machine",
        description="Start the broker and PostgreSQL (embedded ones when EMBEDQ_BROKER_URL / "
        "EMBEDQ_DATABASE_URL are unset), migrate, run a worker, write DATA_DIR/env "
        "once it consumes, and stop everything on Ctrl-C or SIGTERM.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("EMBEDQ_DATA_DIR", ".embedq")),
        help="where embedded servers keep their data and the env file is written (default .embedq)",
    )
    p.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.add_argument("--preload", default=DEFAULT_MODEL, help="model each worker process loads at start ('' for none)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "worker",
        help="run a worker",
        description="Run a Celery worker on the queues embedq.<hardware>.<lane> (and Celery's default queue "
        "'celery'), with the heartbeat and the sweeper in its main process.",
    )
    p.add_argument("--hardware", default="auto", choices=("auto", "cpu", "gpu"), help="hardware class (default auto)")
    p.add_argument("--lanes", default=",".join(LANES), help="comma-separated lanes (default interactive,batch)")
    p.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.add_argument("--name", default="embedq@%h", help="worker node name (default embedq@%%h)")
    p.add_argument("--preload", help="model each worker process loads at start")
    p.add_argument("--no-sweeper", action="store_true", help="do not run the sweeper in this worker")
    p.add_argument(
        "--no-plain-queue",
        action="store_true",
        help="do not also consume Celery's default queue 'celery' (where a plain Celery client's send_task "
        "without queue= lands); use it when other Celery apps share this broker's 'celery' queue",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Run the Alembic migrations against EMBEDQ_DATABASE_URL (or --database-url). "
        "The server needs the pgvector extension.",
    )
    p.add_argument("--revision", default="head", help="revision to upgrade to (default head)")
    p.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead (base: drop everything)")
    p.add_argument("--database-url", help="database to migrate (default EMBEDQ_DATABASE_URL)")
    p.set_defaults(func=cmd_migrate)

    _encode_parser(sub)

    p = sub.add_parser(
        "jobs",
        help="list recent jobs",
        description="List the newest jobs: id, kind, status, progress, queue, created, error type.",
    )
    p.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser(
        "job",
        help="show one job as JSON",
        description="Print one job's row as JSON: status, progress, attempts, result summary, error.",
    )
    p.add_argument("id")
    p.set_defaults(func=cmd_job)

    p = sub.add_parser(
        "cancel",
        help="cancel a queued or running job",
        description="Cancel a job by id. A running job stops between batches; a finished one is left as it is.",
    )
    p.add_argument("id")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser(
        "sweep",
        help="re-send lost jobs and fail exhausted ones, once",
        description="Run one sweeper pass now (workers run it every EMBEDQ_SWEEP_INTERVAL seconds): "
        "re-send queued jobs whose message was lost and running jobs whose lease "
        "expired, and fail jobs out of attempts. Prints a JSON report.",
    )
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "models",
        help="list or register models",
        description="List the model names jobs may use, or register (add) a local "
        "sentence-transformers folder under a name; its version is the sha256 of its "
        "files.",
    )
    models_sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    models_sub.add_parser("list", help="list model names jobs may use")
    add = models_sub.add_parser("add", help="register a local sentence-transformers folder under a name")
    add.add_argument("name")
    add.add_argument("path")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("up", "worker"):  # those two configure logging for the services they run
        logging.basicConfig(level=logging.WARNING, format="embedq: %(message)s")
    # Connection retries of the pool and the listener: their reasons reach the user in our errors.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    logging.getLogger("api_client.notify").setLevel(logging.CRITICAL)
    try:
        return int(args.func(args) or 0)
    except JobCancelled as exc:
        print(f"embedq: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except EmbedQError as exc:
        print(f"embedq: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, INPUT_ERRORS) else EXIT_FAILED
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        print(f"embedq: invalid EMBEDQ_* settings: {problems}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, TimeoutError) as exc:
        print(f"embedq: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
