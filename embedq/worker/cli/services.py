"""Commands that run the service: ``up``, ``worker``, ``migrate``, ``sweep``.

They need the worker extra (and ``up`` the embedded one for servers it starts);
each checks for it before importing anything of it.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from api_client.backends import BACKENDS
from api_client.routing import LANES
from api_client.schemas import DEFAULT_MODEL
from api_client.settings import get_settings
from embedq.worker.cli.common import UsageError, require
from embedq.worker.layout import BATCH_NICE

DASHBOARD_PORT = 8765
"""The dashboard port of `embedq up` (``embedq.worker.stack.DASHBOARD_PORT``; not imported, to keep the
command line light)."""

ORDER = 10
"""Where these commands come in ``embedq --help``."""


def _logging(args: argparse.Namespace) -> None:
    """The process's logging, and its children's: level, format (text or JSON), libraries quiet, no progress bars."""
    from embedq.worker import logs

    os.environ["EMBEDQ_LOG_FORMAT"] = args.log_format
    logs.environment()
    logs.configure(args.loglevel, args.log_format)


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("EMBEDQ_LOG_FORMAT", "text"),
        help="text lines, or one JSON object a line with the job's id, kind, queue, lane, items and seconds on "
        "every line of a job (default EMBEDQ_LOG_FORMAT, else text)",
    )


def cmd_up(args: argparse.Namespace) -> int:
    require("worker", "embedq up")
    settings = get_settings(env_file=False)
    if not (settings.broker_url and settings.database_url):
        require("embedded", "embedq up")
    from embedq.worker.stack import up

    _logging(args)
    return up(
        data_dir=args.data_dir,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        preload=args.preload or None,
        backend=args.backend,
        dashboard_port=None if args.dashboard_port < 0 else args.dashboard_port,
        flower_port=args.flower_port if args.flower else None,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    require("worker", "embedq worker")
    from embedq.worker import metrics

    folder = metrics.prepare()  # before anything imports prometheus_client, in this process and its children
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    from api_client.db import connect
    from embedq.worker import hardware as machine
    from embedq.worker.db import require_schema
    from embedq.worker.layout import plan
    from embedq.worker.supervisor import supervise

    hardware = machine.detect(args.hardware)
    settings = get_settings()
    try:
        consumers = plan(
            name=args.name,
            hardware=hardware,
            lanes=tuple(lane.strip() for lane in args.lanes.split(",") if lane.strip()),
            cores=machine.usable_cores(),
            concurrency=args.concurrency,
            interactive_concurrency=args.interactive_concurrency,
            devices=machine.parse_devices(
                args.devices, hardware=hardware, count=machine.gpu_count() if hardware == "gpu" else 0
            ),
            backend=args.backend or settings.backend,
            threads=args.threads if args.threads is not None else settings.torch_threads,
            shared=args.shared_lanes,
            plain_queue=not args.no_plain_queue,
            sweeper=settings.sweeper and not args.no_sweeper,
            batch_nice=args.batch_nice,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    _, database_url = settings.require_urls()
    with connect(database_url) as conn:
        require_schema(conn)
    if hardware == "cpu":
        from embedq.worker.cli.gating import ensure_served

        ensure_served(args.preload or DEFAULT_MODEL, args.backend or settings.backend, by=f"embedq worker {args.name}")
    if args.preload:
        os.environ["EMBEDQ_PRELOAD"] = args.preload
    if args.task_events:
        os.environ["EMBEDQ_TASK_EVENTS"] = "1"
    url, _ = metrics.serve(args.metrics_host or settings.metrics_host, args.metrics_port)
    os.environ["EMBEDQ_METRICS_URL"] = url  # published by every consumer with its heartbeat
    _logging(args)
    logging.getLogger("embedq.worker").info("metrics at %s", url)
    return supervise(consumers, loglevel=args.loglevel)


def cmd_migrate(args: argparse.Namespace) -> int:
    require("worker", "embedq migrate")
    from embedq import migrations

    url = args.database_url or get_settings().require_database()
    if args.downgrade:
        migrations.downgrade(url, args.downgrade)
    else:
        migrations.upgrade(url, args.revision)
    print(f"database at revision {migrations.current(url) or 'base (empty)'}")
    return 0


def cmd_sweep(_args: argparse.Namespace) -> int:
    require("worker", "embedq sweep")
    from api_client.db import connect
    from embedq.worker.app import app
    from embedq.worker.sweeper import sweep

    settings = get_settings()
    with connect(settings.require_urls()[1]) as conn:
        report = sweep(conn=conn, app=app, settings=settings)
    print(json.dumps(dataclasses.asdict(report)))
    return 0


def _backend_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="before consuming, when the preload model (else the default model) has no backend promoted "
        "fleet-wide yet: auto gates this CPU's backends and promotes the fastest that passed (about a minute "
        "on two cores, once per model version), a backend name gates and promotes that one, torch gates "
        "nothing (the model serves torch until `embedq models promote`). Jobs always follow the fleet's "
        "promotion (default EMBEDQ_BACKEND, else auto)",
    )


def register(sub: Any) -> None:
    """Add ``up``, ``worker``, ``migrate`` and ``sweep`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "up",
        help="run the whole service on this machine",
        description="Start the broker and PostgreSQL (embedded ones when EMBEDQ_BROKER_URL / "
        "EMBEDQ_DATABASE_URL are unset), migrate, run a worker, write DATA_DIR/env "
        "once it consumes, and stop everything on Ctrl-C or SIGTERM. Needs the worker extra, and the "
        "embedded one unless both URLs are set.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("EMBEDQ_DATA_DIR", ".embedq")),
        help="where embedded servers keep their data and the env file is written (default .embedq)",
    )
    p.add_argument("--concurrency", type=int, default=1, help="batch lane processes (default 1)")
    _log_options(p)
    p.add_argument("--preload", default=DEFAULT_MODEL, help="model each worker process loads at start ('' for none)")
    p.add_argument(
        "--flower",
        action="store_true",
        help="also run Flower (Celery's monitor; its workers then send task events) and write its URL into the "
        "env file as EMBEDQ_FLOWER_URL",
    )
    p.add_argument("--flower-port", type=int, default=5555, help="Flower's port (default 5555)")
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=DASHBOARD_PORT,
        help=f"port of the job dashboard it serves (default {DASHBOARD_PORT}, a free one when taken; 0 for any "
        "free one, -1 for none); its URL goes into the env file as EMBEDQ_DASHBOARD_URL",
    )
    _backend_flag(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "worker",
        help="run a worker",
        description="Run a worker on the queues embedq.<hardware>.<lane> (and Celery's default queue 'celery'). "
        "On CPU each lane gets a Celery consumer process of its own, so interactive jobs never wait behind "
        "batch jobs: the interactive one on one thread, the batch one on the cores at a lower priority. With "
        "--hardware gpu, one consumer per device (--devices), each seeing only its GPU. Each consumer keeps a "
        "heartbeat row (embedq fleet lists them); one runs the sweeper. Needs the worker extra.",
    )
    p.add_argument("--hardware", default="auto", choices=("auto", "cpu", "gpu"), help="hardware class (default auto)")
    p.add_argument("--lanes", default=",".join(LANES), help="comma-separated lanes (default interactive,batch)")
    p.add_argument(
        "--devices", help="GPU workers: comma-separated CUDA device ids, one consumer each (default: every GPU)"
    )
    _backend_flag(p)
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="pool processes of the batch consumer, or of the only one (one lane, --shared-lanes) (default 1)",
    )
    p.add_argument(
        "--interactive-concurrency",
        type=int,
        default=1,
        help="pool processes of the interactive consumer (default 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="intra-op threads (torch, ONNX Runtime) of every pool process (default EMBEDQ_TORCH_THREADS; "
        "unset or 0: 1 for the interactive consumer, the cores divided by --concurrency for the others)",
    )
    p.add_argument(
        "--batch-nice",
        type=int,
        default=BATCH_NICE,
        help=f"niceness of the batch consumer when the lanes have their own (default {BATCH_NICE}; 0 for none)",
    )
    p.add_argument(
        "--shared-lanes",
        action="store_true",
        help="consume every lane in one process (interactive jobs then wait behind batch jobs)",
    )
    _log_options(p)
    p.add_argument(
        "--name", default="embedq@%h", help="worker name (default embedq@%%h); its consumers are NAME:<role>"
    )
    p.add_argument("--preload", help="model each worker process loads at start")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("EMBEDQ_METRICS_PORT", "0")),
        help="port of the Prometheus /metrics of this worker (all its processes summed); default "
        "EMBEDQ_METRICS_PORT, else 0: any free port, published in `embedq status --json`",
    )
    p.add_argument(
        "--metrics-host",
        help="address the metrics listen on (default EMBEDQ_METRICS_HOST, else 127.0.0.1; 0.0.0.0 for all)",
    )
    p.add_argument("--no-sweeper", action="store_true", help="do not run the sweeper in this worker")
    p.add_argument(
        "--task-events",
        action="store_true",
        help="send Celery task events, for Flower (default EMBEDQ_TASK_EVENTS, else off: two more broker messages "
        "per task)",
    )
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
        "The server needs the pgvector extension. Needs the worker extra.",
    )
    p.add_argument("--revision", default="head", help="revision to upgrade to (default head)")
    p.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead (base: drop everything)")
    p.add_argument("--database-url", help="database to migrate (default EMBEDQ_DATABASE_URL)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "sweep",
        help="re-send lost jobs and fail exhausted ones, once",
        description="Run one sweeper pass now (workers run it every EMBEDQ_SWEEP_INTERVAL seconds): "
        "re-send queued jobs whose message was lost and running jobs whose lease "
        "expired, and fail jobs out of attempts. Prints a JSON report. Needs the worker extra.",
    )
    p.set_defaults(func=cmd_sweep)
