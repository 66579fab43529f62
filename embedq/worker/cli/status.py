"""``embedq status``: a health check of the broker, the database, the workers, the queues and the jobs.

It runs on the light client: no Alembic (the schema's head revision is read
from the migration files' text) and no worker code.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import logging
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from api_client.db import public_url
from api_client.settings import Settings, get_settings

ORDER = 80
"""Where these commands come in ``embedq --help``."""

log = logging.getLogger(__name__)


def migration_heads(versions: Path | None = None) -> list[str]:
    """The head revisions of the migration files in ``versions`` (default: the installed ``embedq.migrations``)."""
    if versions is None:
        spec = find_spec("embedq.migrations")  # locates the package without importing it (it imports Alembic)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            return []
        versions = Path(locations[0]) / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        values = _assignments(path, ("revision", "down_revision"))
        if isinstance(values.get("revision"), str):
            revisions.add(values["revision"])
        down = values.get("down_revision")
        parents.update([down] if isinstance(down, str) else list(down or ()))
    return sorted(revisions - parents)


def _assignments(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Literal module-level assignments ``name = ...`` of a Python file, without running it."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in names:
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    continue
    return found


def check_broker(settings: Settings, timeout: float) -> dict[str, Any]:
    """Whether the broker answers, and the messages waiting on each queue workers consume."""
    from api_client.celery_conf import PLAIN_QUEUE, producer_app, queue_depth
    from api_client.routing import QUEUES

    report: dict[str, Any] = {"url": public_url(settings.broker_url or ""), "reachable": False, "queues": {}}
    app = producer_app(settings)
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            report["reachable"] = True
            report["queues"] = {queue: queue_depth(connection, queue) for queue in (*QUEUES, PLAIN_QUEUE)}
    except Exception as exc:  # any failure to connect is what this check reports
        report["error"] = str(exc).strip() or type(exc).__name__
    finally:
        app.close()
    return report


def check_database(settings: Settings, timeout: float) -> dict[str, Any]:
    """Whether PostgreSQL answers; its schema revision, pgvector, live workers and jobs by status."""
    import psycopg

    from api_client.db import libpq_url
    from embedq.worker.store import status as status_store

    url = settings.database_url or ""
    heads = migration_heads()
    report: dict[str, Any] = {"url": public_url(url), "reachable": False, "head": heads}
    try:
        with psycopg.connect(
            libpq_url(url), autocommit=True, connect_timeout=max(1, round(timeout)), application_name="embedq-status"
        ) as conn:
            report["reachable"] = True
            revisions = status_store.schema_revisions(conn=conn)
            report["schema"] = revisions
            report["at_head"] = bool(heads) and revisions == heads
            report["pgvector"] = status_store.pgvector_version(conn=conn)
            report["workers"] = [
                {**dataclasses.asdict(worker), "last_seen": worker.last_seen.isoformat()}
                for worker in status_store.live_workers(conn=conn, within=settings.worker_alive)
            ]
            report["jobs"] = status_store.jobs_by_status(conn=conn)
    except psycopg.Error as exc:
        report["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return report


def problems(broker: dict[str, Any], database: dict[str, Any]) -> list[str]:
    """What keeps the service from running jobs; empty when it is healthy."""
    found = []
    if not broker["reachable"]:
        found.append(f"broker unreachable ({broker.get('error')})")
    if not database["reachable"]:
        found.append(f"database unreachable ({database.get('error')})")
        return found
    if not database["at_head"]:
        at = ", ".join(database["schema"]) or "never migrated"
        found.append(f"schema at {at}, head is {', '.join(database['head']) or 'unknown'}: run `embedq migrate`")
    if database["pgvector"] is None:
        found.append("pgvector is not installed in the database")
    if not database["workers"]:
        found.append("no live worker")
    return found


def _print_report(broker: dict[str, Any], database: dict[str, Any]) -> None:
    def state(part: dict[str, Any]) -> str:
        return "reachable" if part["reachable"] else f"UNREACHABLE: {part.get('error')}"

    print(f"broker    {broker['url']}  {state(broker)}")
    print(f"database  {database['url']}  {state(database)}")
    if database["reachable"]:
        at = ", ".join(database["schema"]) or "none"
        print(f"schema    {at} (head {', '.join(database['head']) or 'unknown'})")
        print(f"pgvector  {database['pgvector'] or 'not installed'}")
        print(f"workers   {len(database['workers'])} live")
        for worker in database["workers"]:
            print(
                f"  {worker['name']}  {worker['hardware']}  {','.join(worker['queues'])}  "
                f"last seen {worker['seen_ago']:.1f}s ago"
            )
    if broker["reachable"]:
        print("queues    messages waiting")
        for queue, depth in broker["queues"].items():
            print(f"  {queue:24}{depth:>8,}")
    if database["reachable"]:
        counts = ", ".join(f"{status} {count:,}" for status, count in database["jobs"].items())
        print(f"jobs      {counts or 'none'}")


def cmd_status(args: argparse.Namespace) -> int:
    settings = get_settings()
    settings.require_urls()
    timeout = args.timeout if args.timeout is not None else settings.connect_timeout
    broker = check_broker(settings, timeout)
    database = check_database(settings, timeout)
    found = problems(broker, database)
    if args.json:
        print(json.dumps({"healthy": not found, "problems": found, "broker": broker, "database": database}, indent=2))
    else:
        _print_report(broker, database)
    if found:
        print(f"embedq: not healthy: {'; '.join(found)}", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    """Add ``status`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "status",
        help="check the broker, database, schema and workers (exit 1 when unhealthy)",
        description="Report the broker (reachable, messages waiting on each queue), the database (reachable, "
        "schema revision against the migrations' head, pgvector), the live workers and the jobs by status. "
        "Exit 0 when the broker and database answer, the schema is at head and a worker is live; otherwise "
        "exit 1 and say what is wrong on stderr. For scripts and container health checks.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for each server (default EMBEDQ_CONNECT_TIMEOUT, 10)",
    )
    p.set_defaults(func=cmd_status)
