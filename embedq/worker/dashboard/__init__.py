"""The job dashboard: one read-only page of what embedq is doing, served over HTTP.

``serve(settings, host, port)`` answers ``GET /`` with the page
(``page.html``), ``GET /api/snapshot`` with the JSON it renders
(``snapshot.snapshot``: recent jobs with progress, duration and error, the
queues, the fleet with its lanes and backends, collections with their index
versions, classifiers with their held-out metrics, models with their gates)
and ``GET /healthz`` with ``ok``. Nothing it serves changes anything. It
needs only the light client (psycopg): ``embedq dashboard`` points it at any
deployment, and ``embedq up`` starts one beside its worker.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from psycopg_pool import ConnectionPool

from api_client.db import libpq_url
from api_client.settings import Settings
from embedq.worker.dashboard.snapshot import snapshot

log = logging.getLogger(__name__)

PAGE = resources.files(__name__).joinpath("page.html")


class Dashboard(ThreadingHTTPServer):
    """The HTTP server of the dashboard, with its own small pool of read connections."""

    daemon_threads = True

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings
        self.pool = ConnectionPool(
            libpq_url(settings.require_database()),
            kwargs={"autocommit": True, "application_name": "embedq-dashboard"},
            min_size=1,
            max_size=4,
            open=True,
            name="embedq-dashboard",
            timeout=settings.connect_timeout,
        )
        self.page = PAGE.read_bytes()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://{host if host not in ('0.0.0.0', '') else '127.0.0.1'}:{port}/"

    def read(self) -> dict[str, Any]:
        with self.pool.connection() as conn:
            return snapshot(conn, within=self.settings.worker_alive)

    def server_close(self) -> None:
        super().server_close()
        self.pool.close()


class _Handler(BaseHTTPRequestHandler):
    server: Dashboard

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.page)
        elif path == "/api/snapshot":
            try:
                body = json.dumps(self.server.read(), default=str).encode()
            except Exception as exc:  # the database is down: the page says so and keeps asking
                body = json.dumps({"down": f"{type(exc).__name__}: {exc}"}).encode()
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "application/json", body)
                return
            self._send(HTTPStatus.OK, "application/json", body)
        elif path == "/healthz":
            self._send(HTTPStatus.OK, "text/plain", b"ok\n")
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard: " + format, *args)


def start(settings: Settings, host: str = "127.0.0.1", port: int = 0) -> Dashboard:
    """A dashboard serving from a background thread; ``shutdown()`` then ``server_close()`` stop it."""
    server = Dashboard(settings, host, port)
    threading.Thread(target=server.serve_forever, name="embedq-dashboard", daemon=True).start()
    return server
