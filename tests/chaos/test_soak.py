"""Soak: a sustained mixed stream at about 70% of the measured capacity, for ``EMBEDQ_SOAK_SECONDS`` (600 by
default; 3600 for an hour).

Run it with ``HF_HUB_OFFLINE=1 .venv/bin/pytest -m slow -s tests/chaos/test_soak.py``. The capacity is
measured first, on the same worker, with a burst of the same mix. Judged: no job fails, the queues drain, the
worker's memory stays flat after warm-up, Redis's memory returns to its baseline, and PostgreSQL's
connections stay within the pools' sizes. The figures are printed (``-s``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis as redis_client

from api_client import EmbedQ, JobStatus
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

SECONDS = float(os.environ.get("EMBEDQ_SOAK_SECONDS", "600"))
LOAD = 0.7
CLIENT_POOL = 8
"""``EmbedQ``'s connection pool size (``api_client.client``)."""


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)] if p.is_running())


class Stream:
    """The mix: encode (new texts and repeats), similarity, a search and a classification, in turn."""

    def __init__(self, eq: EmbedQ) -> None:
        self.eq = eq
        self.n = 0
        self.texts = helpers.banking_texts(400)

    def next(self) -> object:
        self.n += 1
        i = self.n
        fresh = [f"{t} [{uuid.uuid4().hex[:6]}]" for t in self.texts[i % 300 : i % 300 + 8]]
        match i % 5:
            case 0:
                return self.eq.similarity(fresh[:2], self.texts[i % 300 : i % 300 + 20])
            case 1:
                return self.eq.search("soak", [fresh[0]], k=5)
            case 2:
                return self.eq.classify("soak-intents", fresh[:2])
            case 3:
                return self.eq.encode(self.texts[i % 300 : i % 300 + 8])  # repeats: from the cache
            case _:
                return self.eq.encode(fresh)


@pytest.mark.slow
@pytest.mark.timeout(int(SECONDS) + 900)
def test_a_sustained_stream_at_seventy_percent_of_capacity(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    redis_url = helpers.other_redis_db(broker_url)
    env = helpers.worker_env(redis_url, isolated_database, EMBEDQ_ARTIFACT_ROOT=str(tmp_path / "artifacts"))
    worker = helpers.start_worker(env, isolated_database, "soak@%h", tmp_path / "worker.log")
    eq = EmbedQ(get_settings(env, env_file=False))
    broker = redis_client.Redis.from_url(redis_url)
    try:
        docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(helpers.banking_texts(300))]
        eq.create_collection("soak")
        eq.upsert("soak", docs).wait(timeout=120)
        eq.build_index("soak").wait(timeout=120)
        eq.create_classifier(
            "soak-intents", labels={"card": "my card", "transfer": "a transfer", "account": "my account"}
        )
        stream = Stream(eq)

        burst = [stream.next() for _ in range(150)]  # capacity: the same mix, as fast as it drains
        started = time.monotonic()
        assert all(job.wait(timeout=300).status == JobStatus.SUCCEEDED for job in burst)
        capacity = len(burst) / (time.monotonic() - started)
        rate = LOAD * capacity
        time.sleep(5)
        redis_baseline = broker.info("memory")["used_memory"]

        samples = []
        jobs = []
        t0 = time.monotonic()
        next_sample = t0
        while (now := time.monotonic()) - t0 < SECONDS:
            while len(jobs) < (now - t0) * rate:
                jobs.append(stream.next())
            if now >= next_sample:
                with eq._pool.connection() as conn:
                    connections = dict(
                        conn.execute(
                            "SELECT split_part(application_name, ' ', 1), count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() GROUP BY 1"
                        ).fetchall()
                    )
                    backlog = conn.execute(
                        "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
                    ).fetchone()[0]
                samples.append(
                    {
                        "t": round(now - t0),
                        "rss_mb": round(tree_rss(worker.pid) / 2**20),
                        "redis_mb": round(broker.info("memory")["used_memory"] / 2**20, 2),
                        "backlog": backlog,
                        "connections": connections,
                    }
                )
                next_sample += max(10.0, SECONDS / 60)
            time.sleep(0.01)

        drain_started = time.monotonic()
        infos = [job.wait(timeout=300) for job in jobs]
        drain = time.monotonic() - drain_started
        failed = [(i.kind, i.status, i.error) for i in infos if i.status != JobStatus.SUCCEEDED]
        time.sleep(5)
        redis_after = broker.info("memory")["used_memory"]
        warm = [s["rss_mb"] for s in samples if s["t"] >= SECONDS * 0.2]
        peak_connections = max(sum(s["connections"].values()) for s in samples)
        worker_connections = max(s["connections"].get("embedq-worker", 0) for s in samples)
        report = {
            "seconds": SECONDS,
            "capacity_jobs_per_s": round(capacity, 1),
            "rate_jobs_per_s": round(rate, 1),
            "jobs": len(jobs),
            "failed": len(failed),
            "drain_seconds": round(drain, 1),
            "rss_mb_after_warmup": [min(warm), max(warm)],
            "redis_mb": [round(redis_baseline / 2**20, 2), round(redis_after / 2**20, 2)],
            "peak_connections": peak_connections,
            "peak_worker_connections": worker_connections,
            "max_backlog": max(s["backlog"] for s in samples),
        }
        print(json.dumps(report))
        print(json.dumps(samples))

        assert failed == []
        assert drain < 60, report
        assert max(warm) - min(warm) < max(0.1 * min(warm), 100), report  # flat after warm-up
        assert redis_after - redis_baseline < 1 << 20, report  # back to its baseline within 1 MiB
        assert all(s["connections"].get("embedq-client", 0) <= CLIENT_POOL for s in samples), samples
        assert worker_connections <= min(s["connections"].get("embedq-worker", 0) for s in samples) + 2, samples
    finally:
        broker.close()
        eq.close()
        stop_worker(worker, timeout=30)
