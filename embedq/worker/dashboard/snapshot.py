"""What the dashboard shows, read in one go: jobs, queues, the fleet, collections, classifiers and models.

Read-only queries over the tables every deployment has (``jobs``,
``workers``, ``collections``, ``classifier_versions``, ``models``,
``model_serving``); nothing here writes. Each part is read on its own, so
one that fails (a database at an older schema) leaves the others shown.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from api_client.store import classifiers as classifiers_store
from api_client.store import collections as collections_store
from api_client.store import workers as workers_store

log = logging.getLogger(__name__)

RECENT_JOBS = 60


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def jobs(conn: psycopg.Connection, limit: int = RECENT_JOBS) -> list[dict[str, Any]]:
    """The newest jobs that are not chunks, with their progress (a parent's summed over its chunks)."""
    rows = conn.execute(
        "SELECT id, kind, status, queue, CASE WHEN chunks > 0 AND status <> 'succeeded' THEN "
        "(SELECT coalesce(sum(c.progress_done), 0)::int FROM jobs c WHERE c.parent_id = j.id) "
        "ELSE progress_done END, progress_total, attempts, chunks, result->>'backend', error->>'type', "
        "error->>'message', created_at, started_at, finished_at, "
        "extract(epoch FROM coalesce(finished_at, now()) - coalesce(started_at, created_at))::float8 "
        "FROM jobs j WHERE parent_id IS NULL ORDER BY created_at DESC LIMIT %s",
        (limit,),
    ).fetchall()
    keys = ("id", "kind", "status", "queue", "done", "total", "attempts", "chunks", "backend", "error_type")
    out = []
    for row in rows:
        item = dict(zip(keys, row[:10], strict=True))
        item["id"] = str(item["id"])
        item["error"] = row[10]
        item["created_at"], item["started_at"], item["finished_at"] = map(_iso, row[11:14])
        item["seconds"] = round(row[14], 3) if row[14] is not None else None
        out.append(item)
    return out


def queues(conn: psycopg.Connection, within: float) -> list[dict[str, Any]]:
    """Each queue with jobs waiting or running, and whether a live worker consumes it."""
    rows = conn.execute(
        "SELECT queue, count(*) FILTER (WHERE status = 'queued' AND chunks_done >= chunks), "
        "count(*) FILTER (WHERE status = 'running' AND chunks = 0) FROM jobs "
        "WHERE status IN ('queued', 'running') GROUP BY queue ORDER BY queue"
    ).fetchall()
    consumed = workers_store.consumed(conn=conn, within=within)
    found = {queue: {"queue": queue, "queued": queued, "running": running} for queue, queued, running in rows}
    for queue in consumed:
        found.setdefault(queue, {"queue": queue, "queued": 0, "running": 0})
    return [{**found[queue], "consumed": queue in consumed} for queue in sorted(found)]


def fleet(conn: psycopg.Connection, within: float) -> list[dict[str, Any]]:
    return [dataclasses.asdict(row) for row in workers_store.fleet(conn=conn, within=within)]


def collections(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [_plain(item) for item in collections_store.list_collections(conn=conn)]


def classifiers(conn: psycopg.Connection) -> list[dict[str, Any]]:
    out = []
    for item in classifiers_store.list_classifiers(conn=conn):
        metrics = item.get("metrics") or {}
        out.append(
            {
                "name": item["name"],
                "model": item["model"],
                "active_version": item["active_version"],
                "versions": item["versions"],
                "method": item["method"],
                "labels": len(item.get("labels") or []),
                "threshold": item["threshold"],
                "accuracy": metrics.get("accuracy"),
                "macro_f1": metrics.get("macro_f1"),
                "coverage": metrics.get("coverage"),
            }
        )
    return out


def models(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every embedding model version with its backend, gate verdict and whether it serves requests by default."""
    rows = conn.execute(
        "SELECT m.name, m.version, m.dtype, m.backend, m.dimension, m.metrics->'gate', "
        "coalesce(s.backend, 'torch') = m.backend "
        "FROM models m LEFT JOIN model_serving s ON (s.name, s.sha256, s.dtype) = (m.name, m.sha256, m.dtype) "
        "WHERE m.kind = 'embedding' ORDER BY m.name, m.version, m.backend"
    ).fetchall()
    out = []
    for name, version, dtype, backend, dimension, recorded, serving in rows:
        gate = recorded or {}
        out.append(
            {
                "name": name,
                "version": version,
                "dtype": dtype,
                "backend": backend,
                "dimension": dimension,
                "serving": bool(serving),
                "gate": None if not gate else ("passed" if gate.get("passed") else "failed"),
                "failed": gate.get("failed") or [],
                "sts_delta": gate.get("delta"),
                "invariance": (gate.get("invariance") or {}).get("max_abs"),
                "overlap": (gate.get("search") or {}).get("overlap"),
                "speed": (gate.get("speed") or {}).get("ratio"),
            }
        )
    return out


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _iso(value) if isinstance(value, dt.datetime) else value for key, value in item.items()}


def snapshot(conn: psycopg.Connection, *, within: float) -> dict[str, Any]:
    """Every part, each ``None`` with an ``errors`` entry if it could not be read."""
    parts: dict[str, Callable[[], Any]] = {
        "jobs": lambda: jobs(conn),
        "queues": lambda: queues(conn, within),
        "fleet": lambda: fleet(conn, within),
        "collections": lambda: collections(conn),
        "classifiers": lambda: classifiers(conn),
        "models": lambda: models(conn),
    }
    out: dict[str, Any] = {"errors": {}}
    for name, read in parts.items():
        try:
            out[name] = read()
        except psycopg.Error as exc:
            log.warning("dashboard: could not read %s: %s", name, exc)
            out[name] = None
            out["errors"][name] = str(exc).strip().splitlines()[0]
    out["at"] = dt.datetime.now(dt.UTC).isoformat()
    return out
