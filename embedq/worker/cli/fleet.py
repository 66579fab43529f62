"""``embedq fleet``: the live workers, their consumer processes, what each consumes and runs, and its jobs.

It runs on the light client (the ``workers`` and ``jobs`` tables only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from api_client.settings import get_settings

ORDER = 90
"""Where these commands come in ``embedq --help``."""


def read(settings: Any) -> dict[str, Any]:
    """The live consumers (``api_client.store.workers.fleet``) and the queues where jobs wait with none."""
    from api_client.db import connect
    from api_client.store import workers as workers_store
    from embedq.worker.store import status as status_store

    within = settings.worker_alive
    with connect(settings.require_database()) as conn:
        consumers = workers_store.fleet(conn=conn, within=within)
        queued = status_store.queued_by_queue(conn=conn)
    consumed = {queue for row in consumers for queue in row.queues}
    return {
        "workers": [dataclasses.asdict(row) for row in consumers],
        "unconsumed": {queue: count for queue, count in queued.items() if queue not in consumed},
    }


def _print(report: dict[str, Any]) -> None:
    workers = report["workers"]
    nodes: dict[str, list[dict[str, Any]]] = {}
    for row in workers:
        nodes.setdefault(row["node"] or row["name"], []).append(row)
    print(f"{len(nodes)} live worker(s), {len(workers)} consumer process(es)")
    for node, rows in nodes.items():
        supervisor = rows[0]["supervisor_pid"]
        print(f"{node}" + (f"  (embedq worker pid {supervisor})" if supervisor else ""))
        for row in rows:
            print(
                f"  {row['name']}  {row['hardware']}  lanes {','.join(row['lanes']) or '-'}  "
                f"backend {row['backend']}  devices {','.join(row['devices']) or '-'}  "
                f"{row['concurrency']} process(es) x {row['threads'] or 'default'} thread(s)  "
                f"seen {row['seen_ago']:.1f}s ago"
            )
            print(f"    queues  {','.join(row['queues'])}")
            print(f"    running {', '.join(row['running']) or 'nothing'}")
    for queue, count in report["unconsumed"].items():
        print(f"no live consumer: {queue} ({count:,} queued job(s) wait there)")


def cmd_fleet(args: argparse.Namespace) -> int:
    report = read(get_settings())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


def register(sub: Any) -> None:
    """Add ``fleet`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "fleet",
        help="list the live workers: queues, lanes, backend, devices, running jobs",
        description="List every live consumer process (a heartbeat within EMBEDQ_WORKER_ALIVE), grouped by the "
        "embedq worker it belongs to: its hardware class, lanes, queues, backend, devices, pool processes and "
        "threads, and the jobs it is running; then each queue where jobs wait that no live worker consumes.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_fleet)
