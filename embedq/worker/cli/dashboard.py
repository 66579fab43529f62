"""``embedq dashboard``, with the light client: the read-only job dashboard of any deployment."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from api_client.settings import get_settings

ORDER = 85
"""Where this command comes in ``embedq --help``: beside ``status`` and ``fleet``."""


def cmd_dashboard(args: argparse.Namespace) -> int:
    from embedq.worker.dashboard import Dashboard

    server = Dashboard(get_settings(), args.host, args.port)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stopping.set())
    threading.Thread(target=server.serve_forever, name="embedq-dashboard", daemon=True).start()
    print(f"embedq dashboard at {server.url} (Ctrl-C stops it)", flush=True)
    try:
        stopping.wait()
    finally:
        server.shutdown()
        server.server_close()
    return 0


def register(sub: Any) -> None:
    """Add ``dashboard`` to the command parsers ``sub``."""
    p = sub.add_parser(
        "dashboard",
        help="serve the read-only job dashboard of this deployment",
        description="Serve a page of what embedq is doing, refreshed every 2 seconds: recent jobs with their "
        "progress, duration and error, queues with their depth and consumers, the fleet with its lanes and "
        "backends, collections with their index versions, classifiers with their held-out metrics and models "
        "with their gates. It only reads the database (EMBEDQ_DATABASE_URL, or the env file): point it at any "
        "deployment. JSON at /api/snapshot.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 for any free one)")
    p.set_defaults(func=cmd_dashboard)
