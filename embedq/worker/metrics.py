"""Prometheus metrics of a worker, correct across its processes, served by its ``embedq worker`` process.

Every process of one ``embedq worker`` (its consumers, their pool processes)
writes its samples into files under one folder (prometheus_client's
multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR``, set by ``prepare`` before
prometheus_client is first imported, inherited by every process forked or
started after); the ``embedq worker`` process serves their sum at
``/metrics`` (``serve``) and publishes the URL with its consumers' heartbeat.

The metrics (docs/operations.md, "Metrics"):

- ``embedq_jobs_total{kind,status,lane}``: jobs that ended an attempt here, by
  how (``succeeded``, ``failed``, ``retried``, ``cancelled``) and refused
  messages (``refused``);
- ``embedq_job_seconds{kind,lane}``: time from claim to end of an attempt;
- ``embedq_texts_total{kind,source}``: texts served from the cache
  (``cached``) or through the model (``encoded``);
- ``embedq_tokens_total{kind}``: tokens through the model (padding excluded);
- ``embedq_padding_ratio{kind}``: the share of padding in the last job's batches;
- ``embedq_queue_depth{queue}``: jobs waiting in each queue, by the database;
- ``embedq_jobs_in_flight{kind,lane}``: jobs running now;
- ``embedq_model_load_seconds{backend}``: time to load a model version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(folder: Path | None = None) -> Path:
    """Set up the multiprocess folder for this process and the ones it starts (call before anything imports
    prometheus_client). An existing one set by the environment is kept; otherwise a fresh, empty one."""
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        Path(existing).mkdir(parents=True, exist_ok=True)
        return Path(existing)
    path = folder or Path(tempfile.mkdtemp(prefix="embedq-metrics-"))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def serve(host: str, port: int) -> tuple[str, Any]:
    """Serve the sum of every process's samples at ``http://host:port/metrics``; ``(url, server)``."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = "127.0.0.1" if bound_host in ("0.0.0.0", "", "::") else bound_host
    return f"http://{shown}:{bound_port}/metrics", server


def process_gone(pid: int) -> None:
    """Drop the live gauges of a process that ended (its counters and histograms stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class Metrics:
    """The metric objects, created on first use in each process (after ``prepare``)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.jobs = Counter(
            "embedq_jobs_total", "Job attempts that ended here, by kind, how and lane", ["kind", "status", "lane"]
        )
        self.seconds = Histogram(
            "embedq_job_seconds",
            "Seconds from claim to the end of a job's attempt",
            ["kind", "lane"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.texts = Counter(
            "embedq_texts_total", "Texts served from the cache or through the model", ["kind", "source"]
        )
        self.tokens = Counter("embedq_tokens_total", "Tokens through the model, padding excluded", ["kind"])
        self.padding = Gauge(
            "embedq_padding_ratio",
            "Share of padding in the last job's batches",
            ["kind"],
            multiprocess_mode="mostrecent",
        )
        self.queue_depth = Gauge(
            "embedq_queue_depth",
            "Jobs waiting in each queue (by the database)",
            ["queue"],
            multiprocess_mode="mostrecent",
        )
        self.in_flight = Gauge(
            "embedq_jobs_in_flight", "Jobs running now", ["kind", "lane"], multiprocess_mode="livesum"
        )
        self.model_load = Histogram(
            "embedq_model_load_seconds",
            "Seconds to load a model version",
            ["backend"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )

    def job_ended(
        self, kind: str, lane: str, status: str, seconds: float | None, summary: dict[str, Any] | None
    ) -> None:
        """Count one job's attempt and what its summary says of texts and tokens."""
        self.jobs.labels(kind, status, lane).inc()
        if seconds is not None:
            self.seconds.labels(kind, lane).observe(seconds)
        summary = summary or {}
        for source in ("cached", "encoded"):
            if isinstance(summary.get(source), int):
                self.texts.labels(kind, source).inc(summary[source])
        if isinstance(summary.get("tokens"), int):
            self.tokens.labels(kind).inc(summary["tokens"])
        if isinstance(summary.get("padding_waste"), int | float):
            self.padding.labels(kind).set(summary["padding_waste"])


_metrics: list[Metrics] = []


def metrics() -> Metrics | None:
    """This process's metrics, or ``None`` where no multiprocess folder was prepared (no worker serves them)."""
    if not os.environ.get(MULTIPROC_ENV):
        return None
    if not _metrics:
        _metrics.append(Metrics())
    return _metrics[0]


def lane_of(queue: str) -> str:
    """The lane of a queue name (``embedq.cpu.batch`` → ``batch``; Celery's ``celery`` → ``interactive``)."""
    parts = queue.split(".")
    return parts[2] if len(parts) == 3 and parts[0] == "embedq" else "interactive"
