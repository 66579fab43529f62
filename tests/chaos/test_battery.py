"""A fault battery over a mixed stream of every job kind, with the ``jobs`` ledger in PostgreSQL as the judge.

One stream submits every kind through ``api_client.EmbedQ`` (small and chunked encodes, similarity,
paraphrases, cluster, a chunked upsert, build_index, searches before and after the build, a chunked reindex,
train_classifier, classify, triage and a tiny fine_tune) while faults are injected:

1. the worker's pool processes are SIGKILLed again and again while they run jobs (``--interactive-concurrency
   2``, so that both lanes run their jobs in pool processes that Celery replaces);
2. the whole worker process group is SIGKILLed mid-stream and a new worker started, twice;
3. a poison job whose process dies on every delivery (the test kills the pool process that claims it, as the
   kernel's OOM killer would; no source hook): it must end ``failed`` after ``max_attempts`` deliveries, with
   an error that says how many, and its neighbours succeed;
4. every job is published twice: through the client with the same idempotency key where the kind takes one,
   and as raw duplicate Celery messages carrying the job's id (and an inline request sent twice under one id).

The judge reads the ledger: every accepted job ``succeeded`` (0 lost), outputs exist exactly once
(``encode_outputs`` one row per text, ``job_arrays`` one array per name, ``search_results`` / ``item_results``
one row per item, one ready index version per build or reindex, one classifier version per training, one model
per fine-tune, one artifact folder per training job), and executions are counted from ``jobs.attempts``. Each
test prints a summary (shown with ``-s``) and appends it as one JSON object to ``$EMBEDQ_BATTERY_REPORT``.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from api_client import EmbedQ, JobStatus
from api_client.celery_conf import producer_app
from api_client.kinds import KINDS
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers

CHUNK = 100
"""Chunk size of the battery's client and workers: the 300-text encode, the 150-document upsert and its
reindex are split into chunk jobs."""
LEASE = "2"
WAIT = 240.0
"""Seconds the whole stream may take, faults included."""
SETTLE = 4.0
"""Seconds the ledger is watched after the stream, for late re-executions and redelivery loops."""
KILLS_PER_JOB = 2
"""Test 1 kills one job's process at most this often (the jobs get EMBEDQ_MAX_ATTEMPTS=6)."""

ARRAYS = {"similarity": ["scores"], "paraphrases": ["pairs", "scores"], "cluster": ["members", "offsets"]}
ITEM_TABLES = {"search": "search_results", "classify": "item_results", "triage": "item_results"}


# ---------------------------------------------------------------- the rig: its own database, Redis db, workers


@dataclass
class Rig:
    env: dict[str, str]
    database_url: str
    log: Path
    artifacts: Path
    eq: EmbedQ
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, extra: list[str] | None = None) -> tuple[subprocess.Popen, float]:
        """A worker consuming, and the seconds it took to start."""
        started = time.monotonic()
        proc = helpers.start_worker(self.env, self.database_url, name, self.log, extra=extra)
        self.workers.append(proc)
        return proc, time.monotonic() - started

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)


def flush_redis_db(url: str) -> None:
    """Empty the battery's Redis database, so no message of an earlier test reaches its workers."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture
def make_rig(isolated_database: str, broker_url: str, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**extra: str) -> Rig:
        broker = helpers.other_redis_db(broker_url)
        flush_redis_db(broker)
        artifacts = tmp_path / "artifacts"
        env = helpers.worker_env(
            broker,
            isolated_database,
            EMBEDQ_CHUNK_SIZE=str(CHUNK),
            EMBEDQ_ARTIFACT_ROOT=str(artifacts),
            **extra,
        )
        rig = Rig(
            env, isolated_database, tmp_path / "workers.log", artifacts, EmbedQ(get_settings(env, env_file=False))
        )
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.eq.close()
        for proc in rig.workers:
            stop_worker(proc, timeout=30)


# ---------------------------------------------------------------- the stream


@dataclass
class Submitted:
    kind: str
    label: str
    job_id: str
    items: int = 0
    """Output rows expected (texts, queries or documents); 0 where the output is no list of items."""
    submitted_at: float = field(default_factory=time.monotonic)


class Stream:
    """Submits the mixed stream through the client, in the order its kinds need each other.

    Phase A runs on its own: encodes (one text, a few, a batch-lane one, a chunked one), similarity,
    paraphrases, cluster, a chunked upsert, train_classifier and a tiny fine_tune. Phase B waits for the
    upsert (build_index, a search answered from the delta alone) and the training (classify); phase C for the
    build (a filtered search from the index, triage, a chunked reindex). Every kind that takes an idempotency
    key gets one; with ``twice`` each of those is submitted a second time with the same key.
    """

    def __init__(
        self,
        eq: EmbedQ,
        *,
        fine_tune: bool = True,
        twice: bool = False,
        on_submit: Callable[[Submitted], None] | None = None,
    ) -> None:
        self.eq = eq
        self.tag = uuid.uuid4().hex[:6]
        self.collection = f"battery-{self.tag}"
        self.classifier = f"battery-cl-{self.tag}"
        self.tuned = f"battery-tuned-{self.tag}"
        self.fine_tune = fine_tune
        self.twice = twice
        self.on_submit = on_submit
        self.submitted: list[Submitted] = []
        self.same_key: list[tuple[str, str, str]] = []
        """``(label, first job id, the second submit's job id)`` of each job submitted twice with one key."""
        self.done = threading.Event()
        self.error: BaseException | None = None

    def submit(self, kind: str, label: str, items: int, call: Callable[..., Any], /, *args: Any, **kwargs: Any):
        """``call(*args, **kwargs)`` (a client method), with an idempotency key where it takes one."""
        if "idempotency_key" in inspect.signature(call).parameters:
            kwargs["idempotency_key"] = f"battery-{self.tag}-{label}"
            job = call(*args, **kwargs)
            if self.twice:
                self.same_key.append((label, job.id, call(*args, **kwargs).id))
        else:
            job = call(*args, **kwargs)
        sub = Submitted(kind, label, job.id, items)
        self.submitted.append(sub)
        if self.on_submit is not None:
            self.on_submit(sub)
        return sub

    def wait(self, sub: Submitted, deadline: float) -> None:
        info = self.eq.job_of(sub.job_id).wait(timeout=max(1.0, deadline - time.monotonic()))
        if info.status != JobStatus.SUCCEEDED:
            raise AssertionError(f"{sub.label} ({sub.kind}) ended {info.status}: {info.error}")

    def run(self) -> None:
        deadline = time.monotonic() + WAIT
        try:
            upsert, train = self._phase_a()
            self.wait(upsert, deadline)
            build = self.submit("build_index", "build_index", 0, self.eq.build_index, self.collection, kind="flat")
            self.submit("search", "search-delta", 3, self.eq.search, self.collection, QUERIES[:3], k=5)
            self.wait(train, deadline)
            self.submit("classify", "classify", 10, self.eq.classify, self.classifier, classify_texts(), top_k=2)
            self.wait(build, deadline)
            self._phase_c()
            for sub in list(self.submitted):
                self.wait(sub, deadline)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def _phase_a(self) -> tuple[Submitted, Submitted]:
        eq, s = self.eq, self.submit
        texts = helpers.unique_texts(300, self.tag)
        s("encode", "encode-one", 1, eq.encode, texts[:1])
        s("encode", "encode-small", 8, eq.encode, texts[1:9], normalize=True)
        s("encode", "encode-batch-lane", 40, eq.encode, texts[9:49], lane="batch")
        s("encode", "encode-chunked", 300, eq.encode, texts, batch_size=16)
        s("similarity", "similarity", 4, eq.similarity, texts[:4], texts[50:80])
        s("paraphrases", "paraphrases", 0, eq.paraphrases, texts[80:120])
        s("cluster", "cluster", 0, eq.cluster, texts[120:180], threshold=0.6, min_size=3)
        eq.create_collection(self.collection)
        documents = [
            {"id": f"D-{i}", "text": text, "metadata": {"team": "even" if i % 2 == 0 else "odd"}}
            for i, text in enumerate(helpers.unique_texts(150, f"{self.tag}-doc"))
        ]
        upsert = s("upsert", "upsert-chunked", 150, eq.upsert, self.collection, documents)
        train_texts, train_labels = labelled(per_class=8)
        train = s("train_classifier", "train_classifier", 0, eq.train_classifier, self.classifier, train_texts,
                  train_labels, method="logreg")  # fmt: skip
        if self.fine_tune:
            s("fine_tune", "fine_tune", 0, eq.fine_tune, helpers.MODEL, tuning_pairs(12), name=self.tuned,
              params={"epochs": 1, "batch_size": 4})  # fmt: skip
        return upsert, train

    def _phase_c(self) -> None:
        eq, s = self.eq, self.submit
        s("search", "search-index", len(QUERIES), eq.search, self.collection, QUERIES, k=5, filter={"team": "even"})
        s("triage", "triage", 5, eq.triage, self.classifier, collection=self.collection, texts=QUERIES[:5], k=3)
        s("reindex", "reindex-chunked", 0, eq.reindex, self.collection, kind="flat")

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="battery-stream", daemon=True)
        thread.start()
        return thread


QUERIES = [
    "my card payment was declined",
    "how do I top up my account",
    "I was charged twice",
    "where is my new card",
    "cash withdrawal not recognised",
]


def labelled(per_class: int, offset: int = 0) -> tuple[list[str], list[str]]:
    """``per_class`` real support-desk texts of each of the 8 intents of tests/data."""
    rows = helpers.banking_labelled()
    texts, labels = [], []
    for intent in sorted({label for _, label in rows}):
        mine = [text for text, label in rows if label == intent][offset : offset + per_class]
        texts += mine
        labels += [intent] * len(mine)
    return texts, labels


def classify_texts() -> list[str]:
    texts, _ = labelled(per_class=2, offset=20)
    return texts[:10]


def tuning_pairs(n: int) -> list[list[str]]:
    """``n`` (anchor, positive) pairs: two texts of the same intent."""
    texts, labels = labelled(per_class=6, offset=10)
    pairs = [[texts[i], texts[i + 1]] for i in range(0, len(texts) - 1, 2) if labels[i] == labels[i + 1]]
    return pairs[:n]


# ---------------------------------------------------------------- the judge


@dataclass
class Verdict:
    jobs_per_kind: dict[str, int]
    rows: int
    lost: list[str]
    duplicates: list[str]
    unexpected_rows: int
    executions: int
    extra_executions: int
    attempts: dict[str, int]
    """Attempts of every row that runs (not the parents that only count their chunks), by row id."""
    orphan_index_versions: int
    stray_artifacts: list[str]


def ledger(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT id::text AS id, kind, status, attempts, sends, parent_id::text AS parent_id, chunks, finalize, "
            "error, worker, idempotency_key FROM jobs"
        ).fetchall()


def runs(row: dict[str, Any]) -> bool:
    """Whether the row is ever claimed: every job but a parent whose chunks do its work."""
    return not (row["chunks"] > 0 and not row["finalize"])


def one(_: Submitted) -> tuple[int]:
    """Exactly one (a version, a model row)."""
    return (1,)


OUTPUTS: dict[str, tuple[str, Callable[[Submitted], tuple[Any, ...]]]] = {
    "encode": (
        "SELECT count(*), count(DISTINCT item) FROM encode_outputs WHERE job_id = %(job)s",
        lambda sub: (sub.items, sub.items),
    ),
    **{
        kind: (
            "SELECT array_agg(name ORDER BY name) FROM job_arrays WHERE job_id = %(job)s",
            lambda sub: (ARRAYS[sub.kind],),
        )
        for kind in ARRAYS
    },
    **{
        kind: (
            f"SELECT count(*), count(DISTINCT item) FROM {table} WHERE job_id = %(job)s",
            lambda sub: (sub.items, sub.items),
        )
        for kind, table in ITEM_TABLES.items()
    },
    **{
        kind: (
            "SELECT count(*) FILTER (WHERE status = 'ready') FROM index_versions WHERE job_id = %(job)s",
            one,
        )
        for kind in ("build_index", "reindex")
    },
    "train_classifier": ("SELECT count(*) FROM classifier_versions WHERE job_id = %(job)s", one),
    "fine_tune": ("SELECT count(*) FROM models WHERE name = %(tuned)s", one),
    "upsert": (
        "SELECT count(*) FROM documents d JOIN collections c ON c.id = d.collection_id "
        "WHERE c.name = %(collection)s AND NOT d.deleted",
        lambda sub: (sub.items,),
    ),
}
"""Per kind: the query of a job's outputs and what it must return (one of each, no duplicates)."""


def check_outputs(conn: psycopg.Connection, sub: Submitted, stream: Stream) -> list[str]:
    """What is wrong with the outputs of ``sub``: missing or duplicated."""
    sql, want = OUTPUTS[sub.kind]
    params = {"job": sub.job_id, "tuned": stream.tuned, "collection": stream.collection}
    got = tuple(conn.execute(sql, params).fetchone() or ())
    return [] if got == want(sub) else [f"{sub.label} ({sub.kind}): outputs {got}, expected {want(sub)}"]


def stray_artifacts(root: Path) -> list[str]:
    """Temporary folders left behind, and training jobs with more than one attempt folder kept."""
    stray = [str(p.relative_to(root)) for p in root.rglob(".tmp-*")] if root.exists() else []
    for kind in ("classifiers", "models"):
        for job_dir in (root / kind).glob("*") if (root / kind).exists() else []:
            attempts = sorted(p.name for p in job_dir.glob("attempt-*"))
            if len(attempts) > 1:
                stray.append(f"{kind}/{job_dir.name}: {attempts}")
    return stray


def judge(rig: Rig, stream: Stream, expected_extra_rows: set[str] = frozenset()) -> Verdict:
    with rig.connect() as conn:
        rows = ledger(conn)
        by_id = {row["id"]: row for row in rows}
        mine = {sub.job_id for sub in stream.submitted} | set(expected_extra_rows)
        expected = {row["id"] for row in rows if row["id"] in mine or row["parent_id"] in mine}
        lost = [f"{sub.label}: {by_id.get(sub.job_id, {}).get('status')}" for sub in stream.submitted
                if by_id.get(sub.job_id, {}).get("status") != "succeeded"]  # fmt: skip
        lost += [f"row {r['id']} ({r['kind']} chunk): {r['status']}" for r in rows
                 if r["parent_id"] is not None and r["status"] != "succeeded"]  # fmt: skip
        duplicates = [problem for sub in stream.submitted for problem in check_outputs(conn, sub, stream)]
        mine_ids = [sub.job_id for sub in stream.submitted]
        orphans = conn.execute(
            "SELECT count(*) FROM index_versions WHERE status = 'building' AND job_id = ANY(%s::uuid[])", (mine_ids,)
        ).fetchone()[0]
    attempts = {row["id"]: row["attempts"] for row in rows if runs(row)}
    return Verdict(
        jobs_per_kind=dict(Counter(sub.kind for sub in stream.submitted)),
        rows=len(rows),
        lost=lost,
        duplicates=duplicates,
        unexpected_rows=len(set(by_id) - expected),
        executions=sum(attempts.values()),
        extra_executions=sum(max(n - 1, 0) for n in attempts.values()),
        attempts=attempts,
        orphan_index_versions=orphans,
        stray_artifacts=stray_artifacts(rig.artifacts),
    )


def report(test: str, verdict: Verdict | None, problems: list[str], **figures: Any) -> None:
    """Print the test's summary and append it to $EMBEDQ_BATTERY_REPORT."""
    summary: dict[str, Any] = {"test": test, **figures}
    if verdict is not None:
        summary.update(
            jobs_per_kind=verdict.jobs_per_kind,
            ledger_rows=verdict.rows,
            lost=len(verdict.lost),
            lost_jobs=verdict.lost,
            duplicates=len(verdict.duplicates),
            duplicate_outputs=verdict.duplicates,
            unexpected_rows=verdict.unexpected_rows,
            executions=verdict.executions,
            extra_executions=verdict.extra_executions,
            max_attempts_seen=max(verdict.attempts.values(), default=0),
            orphan_index_versions=verdict.orphan_index_versions,
            stray_artifacts=verdict.stray_artifacts,
        )
    summary["problems"] = problems
    summary["passed"] = not problems
    print(f"\n=== battery: {test} ===\n{json.dumps(summary, indent=1, default=str)}")
    path = os.environ.get("EMBEDQ_BATTERY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(summary, default=str) + "\n")


def verdict_problems(verdict: Verdict) -> list[str]:
    problems = [f"lost: {x}" for x in verdict.lost] + [f"duplicate/missing output: {x}" for x in verdict.duplicates]
    if verdict.unexpected_rows:
        problems.append(f"{verdict.unexpected_rows} job rows that no submit created")
    problems += [f"stray artifact: {x}" for x in verdict.stray_artifacts]
    if verdict.orphan_index_versions:
        problems.append(f"{verdict.orphan_index_versions} index versions left 'building' by finished jobs")
    return problems


# ---------------------------------------------------------------- processes


def pool_processes(worker: subprocess.Popen) -> set[int]:
    """Pids of the worker's pool processes: the children of its consumers (grandchildren of ``embedq worker``)."""
    found = set()
    try:
        children = psutil.Process(worker.pid).children(recursive=True)
    except psutil.Error:
        return found
    for child in children:
        try:
            if child.ppid() != worker.pid and child.status() != psutil.STATUS_ZOMBIE:  # killed, not reaped yet
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def holder_pid(row: dict[str, Any]) -> int | None:
    """The pid recorded in ``jobs.worker`` (``<consumer>/<pid>``)."""
    worker = row.get("worker") or ""
    tail = worker.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def running_rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [row for row in ledger(conn) if row["status"] == "running" and runs(row)]


def sigkill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Recoveries:
    """Per fault and job it hit: seconds until the job's message was sent again, and until it was claimed again
    (or ended)."""

    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    """job id → ``at`` (monotonic time of the fault), ``attempts`` and ``sends`` then, ``resent`` once seen."""
    resend_s: list[float] = field(default_factory=list)
    claim_s: list[float] = field(default_factory=list)

    def hit(self, row: dict[str, Any], at: float) -> None:
        self.pending.setdefault(
            row["id"], {"at": at, "attempts": row["attempts"], "sends": row["sends"], "resent": False}
        )

    def poll(self, rows: dict[str, dict[str, Any]], since: float | None = None) -> None:
        """Note what happened to each pending job; ``since`` counts from that time instead of the fault's."""
        now = time.monotonic()
        for job_id, hit in list(self.pending.items()):
            row = rows.get(job_id)
            elapsed = round(now - max(hit["at"], since or hit["at"]), 2)
            claimed = row is None or row["attempts"] > hit["attempts"] or row["status"] in FINAL
            if not hit["resent"] and (claimed or row["sends"] > hit["sends"]):
                hit["resent"] = True
                self.resend_s.append(elapsed)
            if claimed:
                self.claim_s.append(elapsed)
                del self.pending[job_id]

    def figures(self) -> dict[str, Any]:
        return {
            "recoveries": len(self.claim_s),
            "resend_max_s": max(self.resend_s, default=0.0),
            "reclaim_max_s": max(self.claim_s, default=0.0),
            "reclaim_mean_s": round(sum(self.claim_s) / len(self.claim_s), 2) if self.claim_s else 0.0,
            "unrecovered": len(self.pending),
        }


FINAL = ("succeeded", "failed", "cancelled")


def resend_window(rig: Rig) -> float:
    """Seconds within which the sweeper must send a job whose holder died again: its lease, two sweeps, the
    re-send backoff's first steps, and 5 s of slack for a loaded 2-core machine."""
    settings = get_settings(rig.env, env_file=False)
    return settings.lease_seconds + settings.sweep_interval * 2 + settings.resend_after * 4 + 5


def settle(rig: Rig, seconds: float = SETTLE) -> dict[str, int]:
    """Watch the ledger for ``seconds`` after the stream; the rows whose attempts changed meanwhile."""
    with rig.connect() as conn:
        before = {row["id"]: row["attempts"] for row in ledger(conn)}
        time.sleep(seconds)
        after = {row["id"]: row["attempts"] for row in ledger(conn)}
    return {job_id: n for job_id, n in after.items() if before.get(job_id) != n}


# ---------------------------------------------------------------- 1. pool processes SIGKILLed again and again


class PoolKiller:
    """SIGKILLs the pool process that runs a job, one attempt at a time, spreading the kills over the kinds."""

    def __init__(self, worker: subprocess.Popen, started: float, gap: float = 1.0) -> None:
        self.worker = worker
        self.started = started
        self.gap = gap
        self.kills: list[dict[str, Any]] = []
        self.per_job: Counter[str] = Counter()
        self.hit: set[tuple[str, int]] = set()
        """(job id, attempt) already killed: a process killed but not yet noticed still holds its row."""
        self.recoveries = Recoveries()

    def step(self, rows: dict[str, dict[str, Any]]) -> None:
        self.recoveries.poll(rows)
        if self.kills and time.monotonic() - self.kills[-1]["at"] < self.gap:
            return
        pool = pool_processes(self.worker)
        targets = [r for r in rows.values() if r["status"] == "running" and runs(r) and holder_pid(r) in pool
                   and (r["id"], r["attempts"]) not in self.hit and self.per_job[r["id"]] < KILLS_PER_JOB]  # fmt: skip
        if not targets:
            return
        by_kind = Counter(kill["kind"] for kill in self.kills)
        row = min(targets, key=lambda r: (by_kind[r["kind"]], self.per_job[r["id"]]))
        pid = holder_pid(row)
        if pid is not None and sigkill(pid):
            at = time.monotonic()
            self.kills.append({"at": at, "t": round(at - self.started, 1), "kind": row["kind"], "job": row["id"],
                               "attempt": row["attempts"], "pid": pid})  # fmt: skip
            self.per_job[row["id"]] += 1
            self.hit.add((row["id"], row["attempts"]))
            self.recoveries.hit(row, at)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_kind_survives_its_pool_processes_being_killed_again_and_again(make_rig) -> None:
    rig = make_rig(EMBEDQ_LEASE_SECONDS=LEASE, EMBEDQ_MAX_ATTEMPTS="6")
    worker, boot = rig.start("battery-pool@%h", extra=["--interactive-concurrency", "2"])
    stream = Stream(rig.eq)
    started = time.monotonic()
    thread = stream.start()
    killer = PoolKiller(worker, started)
    with rig.connect() as conn:
        while not stream.done.wait(0.1):
            killer.step({row["id"]: row for row in ledger(conn)})
        killer.recoveries.poll({row["id"]: row for row in ledger(conn)})
    thread.join(5)
    elapsed = time.monotonic() - started
    late = settle(rig)
    verdict = judge(rig, stream)
    kills, recoveries = killer.kills, killer.recoveries

    problems = verdict_problems(verdict)
    if stream.error is not None:
        problems.append(f"stream: {stream.error}")
    if worker.poll() is not None:
        problems.append(f"the worker exited ({worker.returncode}) when its pool processes were killed")
    if len(kills) < 3:
        problems.append(f"only {len(kills)} pool processes were killed while running a job")
    if late:
        problems.append(f"rows re-executed after the stream ended: {late}")
    if recoveries.pending:
        problems.append(f"jobs never claimed again after their kill: {sorted(recoveries.pending)}")
    if max(recoveries.resend_s, default=0) > resend_window(rig):
        problems.append(f"a killed job waited {max(recoveries.resend_s)}s to be sent again ({resend_window(rig)}s)")
    over = {job_id: n for job_id, n in verdict.attempts.items() if n > 1 + killer.per_job[job_id]}
    if over:
        problems.append(f"rows executed more often than 1 + the kills that hit them: {over}")
    report(
        "pool processes SIGKILLed repeatedly",
        verdict,
        problems,
        faults=len(kills),
        faults_by_kind=dict(Counter(kill["kind"] for kill in kills)),
        kills=[{k: v for k, v in kill.items() if k != "at"} for kill in kills],
        worker_start_s=round(boot, 1),
        stream_s=round(elapsed, 1),
        **recoveries.figures(),
    )
    assert not problems, f"{problems}\n--- worker log ---\n{rig.log_tail()}"


# ---------------------------------------------------------------- 2. the whole worker SIGKILLed, a new one started


def wait_for_work(rig: Rig, stream: Stream, minimum_done: int) -> None:
    """Until at least ``minimum_done`` rows succeeded and one runs (mid-stream)."""

    def ready() -> bool:
        with rig.connect() as conn:
            rows = ledger(conn)
        done = sum(row["status"] == "succeeded" for row in rows)
        return stream.done.is_set() or (done >= minimum_done and any(r["status"] == "running" for r in rows))

    helpers.wait_until(ready, timeout=WAIT, interval=0.1, what=f"{minimum_done} jobs done and one running")


class GroupKiller:
    """SIGKILLs a whole ``embedq worker`` (its process group), starts a new one, and times the recovery."""

    def __init__(self, rig: Rig, worker: subprocess.Popen, started: float, boot: float) -> None:
        self.rig = rig
        self.worker = worker
        self.started = started
        self.boots = [round(boot, 1)]
        self.kills: list[dict[str, Any]] = []
        self.stranded: dict[str, int] = {}
        """Row id → kills that found it running."""
        self.recoveries = Recoveries()

    def kill_and_restart(self, name: str) -> None:
        os.killpg(self.worker.pid, signal.SIGKILL)  # the supervisor, its consumers and their pool processes
        self.worker.wait()
        killed_at = time.monotonic()
        with self.rig.connect() as conn:
            running = running_rows(conn)
        for row in running:
            self.stranded[row["id"]] = self.stranded.get(row["id"], 0) + 1
            self.recoveries.hit(row, killed_at)
        self.kills.append({"t": round(killed_at - self.started, 1), "running": sorted(r["kind"] for r in running)})
        self.worker, boot = self.rig.start(name)
        self.boots.append(round(boot, 1))
        ready_at = time.monotonic()
        # Recovery counts from the new worker's start: nothing can run a job while no worker is up.
        with self.rig.connect() as conn:
            while self.recoveries.pending and time.monotonic() - ready_at < 60:
                self.recoveries.poll({row["id"]: row for row in ledger(conn)}, since=ready_at)
                time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_stranded_jobs_finish_on_a_new_worker_after_the_whole_worker_is_killed(make_rig) -> None:
    rig = make_rig(EMBEDQ_LEASE_SECONDS=LEASE)
    worker, boot = rig.start("battery-group-0@%h")
    stream = Stream(rig.eq)
    started = time.monotonic()
    thread = stream.start()
    group = GroupKiller(rig, worker, started, boot)
    for round_, minimum_done in enumerate((4, 14)):
        wait_for_work(rig, stream, minimum_done)
        if stream.done.is_set():
            break
        group.kill_and_restart(f"battery-group-{round_ + 1}@%h")
    kills, recoveries, stranded = group.kills, group.recoveries, group.stranded
    thread.join(WAIT)
    elapsed = time.monotonic() - started
    late = settle(rig)
    verdict = judge(rig, stream)

    window = resend_window(rig)
    problems = verdict_problems(verdict)
    if stream.error is not None:
        problems.append(f"stream: {stream.error}")
    if not kills:
        problems.append("the stream ended before the worker could be killed")
    if recoveries.pending:
        problems.append(f"stranded jobs never claimed again: {sorted(recoveries.pending)}")
    if max(recoveries.resend_s, default=0) > window:
        problems.append(f"a stranded job waited {max(recoveries.resend_s)}s to be sent again (window {window}s)")
    over = {job_id: n for job_id, n in verdict.attempts.items() if n > 1 + stranded.get(job_id, 0)}
    if over:
        problems.append(f"more than one extra execution per kill: {over}")
    if late:
        problems.append(f"rows re-executed after the stream ended: {late}")
    report(
        "worker process group SIGKILLed, new worker",
        verdict,
        problems,
        faults=len(kills),
        kills=kills,
        stranded_rows=len(stranded),
        worker_start_s=group.boots,
        resend_window_s=window,
        stream_s=round(elapsed, 1),
        **recoveries.figures(),
    )
    assert not problems, f"{problems}\n--- worker log ---\n{rig.log_tail()}"


# ---------------------------------------------------------------- 3. a poison job


def kill_on_every_claim(rig: Rig, worker: subprocess.Popen, job_id: str, stop: threading.Event) -> list[int]:
    """SIGKILL the pool process that claims ``job_id``, on every attempt (as the OOM killer would); the
    attempt numbers killed."""
    killed: list[int] = []
    with rig.connect() as conn:
        while not stop.is_set():
            row = helpers.job_row(conn, job_id)
            if row["status"] in ("succeeded", "failed", "cancelled"):
                break
            pid = holder_pid(row)
            if row["status"] == "running" and row["attempts"] not in killed and pid in pool_processes(worker):
                sigkill(pid)
                killed.append(row["attempts"])
            time.sleep(0.02)
    return killed


def queue_lengths(rig: Rig) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(rig.env["EMBEDQ_BROKER_URL"])
    try:
        return {q: int(client.llen(q)) for q in ("embedq.cpu.batch", "embedq.cpu.interactive", "celery")}
    finally:
        client.close()


def test_a_poison_job_fails_after_bounded_deliveries_and_its_neighbours_succeed(make_rig) -> None:
    rig = make_rig(EMBEDQ_MAX_ATTEMPTS="3")
    settings = get_settings(rig.env, env_file=False)
    worker, boot = rig.start("battery-poison@%h")
    eq = rig.eq
    tag = uuid.uuid4().hex[:6]
    texts = helpers.unique_texts(60, tag)
    before = [eq.encode(texts[:20], lane="batch"), eq.encode(texts[20:22]), eq.similarity(texts[:2], texts[2:12])]
    poison = eq.encode([f"poison {tag}", *texts[:30]], batch_size=4, lane="batch")
    stop = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.extend(kill_on_every_claim(rig, worker, poison.id, stop)))
    started = time.monotonic()
    killer.start()
    after = [eq.encode(texts[30:60], lane="batch"), eq.encode(texts[40:41]), eq.paraphrases(texts[:20])]
    try:
        info = poison.wait(timeout=120)
    finally:
        stop.set()
        killer.join(10)
    to_fail = time.monotonic() - started
    neighbours = [job.wait(timeout=120) for job in (*before, *after)]
    time.sleep(SETTLE)
    with rig.connect() as conn:
        row = helpers.job_row(conn, poison.id)
    queues = queue_lengths(rig)

    error = row["error"] or {}
    message = str(error.get("message", ""))
    problems = []
    if row["status"] != "failed":
        problems.append(f"the poison job is {row['status']}, not failed")
    if row["attempts"] != settings.max_attempts or killed != list(range(1, settings.max_attempts + 1)):
        problems.append(f"deliveries: attempts {row['attempts']}, killed on attempts {killed}")
    if error.get("type") != "AttemptsExhausted":
        problems.append(f"error type {error.get('type')}")
    if not re.search(rf"\b{settings.max_attempts}\b", message):
        problems.append(f"the error does not say how many attempts it took: {message!r}")
    if info.attempts != row["attempts"]:
        problems.append(f"attempts went on after the job failed: {info.attempts} then {row['attempts']}")
    if any(queues.values()):
        problems.append(f"messages left circulating after the failure: {queues}")
    bad = [
        (n.kind, str(n.status), n.attempts) for n in neighbours if n.status != JobStatus.SUCCEEDED or n.attempts != 1
    ]
    if bad:
        problems.append(f"neighbours: {bad}")
    if worker.poll() is not None:
        problems.append(f"the worker exited ({worker.returncode})")
    report(
        "poison job",
        None,
        problems,
        faults=len(killed),
        killed_attempts=killed,
        max_attempts=settings.max_attempts,
        poison_status=row["status"],
        poison_attempts=row["attempts"],
        poison_sends=row["sends"],
        poison_error=error,
        seconds_to_fail=round(to_fail, 1),
        neighbours={f"{n.kind}:{n.id[:8]}": [str(n.status), n.attempts] for n in neighbours},
        queues_after=queues,
        worker_start_s=round(boot, 1),
    )
    assert not problems, f"{problems}\n--- worker log ---\n{rig.log_tail()}"


# ---------------------------------------------------------------- 4. every job published twice


class Duplicator:
    """Publishes raw duplicate messages (the job id as task id, as the client and the sweeper send them)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.app = producer_app(get_settings(rig.env, env_file=False))
        self.sent = 0

    def publish(self, sub: Submitted) -> None:
        with self.rig.connect() as conn:
            rows = conn.execute(
                "SELECT id::text, kind, queue FROM jobs WHERE id = %s OR parent_id = %s", (sub.job_id, sub.job_id)
            ).fetchall()
        for job_id, kind, queue in rows:
            self.app.send_task(KINDS[kind].task_name, kwargs={"job_id": job_id}, queue=queue, task_id=job_id)
            self.sent += 1

    def inline_twice(self, request: dict[str, Any]) -> str:
        """A plain Celery client's inline similarity request, sent twice with one task id."""
        task_id = str(uuid.uuid4())
        for _ in range(2):
            self.app.send_task("embedq.similarity", kwargs={"request": request}, task_id=task_id)
            self.sent += 1
        return task_id

    def close(self) -> None:
        self.app.close()


def test_every_job_published_twice_runs_once(make_rig) -> None:
    rig = make_rig(EMBEDQ_LEASE_SECONDS="3")
    worker, boot = rig.start("battery-dupes@%h")
    duplicator = Duplicator(rig)
    stream = Stream(rig.eq, fine_tune=False, twice=True, on_submit=duplicator.publish)
    started = time.monotonic()
    inline = duplicator.inline_twice({"queries": QUERIES[:2], "texts": QUERIES[2:]})
    stream.run()
    for sub in stream.submitted:  # once more after they finished
        duplicator.publish(sub)
    late = settle(rig)
    duplicator.close()
    elapsed = time.monotonic() - started
    with rig.connect() as conn:
        helpers.wait_until(
            lambda: conn.execute("SELECT 1 FROM jobs WHERE id = %s AND status = 'succeeded'", (inline,)).fetchone(),
            timeout=60,
            what="the inline request to succeed",
        )
        inline_rows = conn.execute("SELECT count(*), max(attempts) FROM jobs WHERE id = %s", (inline,)).fetchone()
        inline_scores = conn.execute("SELECT count(*) FROM job_arrays WHERE job_id = %s", (inline,)).fetchone()[0]
        keyed = conn.execute("SELECT count(*) FROM jobs WHERE idempotency_key IS NOT NULL").fetchone()[0]
    verdict = judge(rig, stream, expected_extra_rows={inline})

    problems = verdict_problems(verdict)
    if stream.error is not None:
        problems.append(f"stream: {stream.error}")
    split = [(label, a, b) for label, a, b in stream.same_key if a != b]
    if split:
        problems.append(f"one idempotency key, two jobs: {split}")
    if keyed != len(stream.same_key):
        problems.append(f"{keyed} rows carry an idempotency key for {len(stream.same_key)} keyed submits")
    if verdict.extra_executions:
        problems.append(f"duplicate messages ran jobs again: {verdict.extra_executions} extra executions")
    if tuple(inline_rows) != (1, 1) or inline_scores != 1:
        problems.append(f"inline request sent twice: rows/attempts {tuple(inline_rows)}, arrays {inline_scores}")
    if late:
        problems.append(f"rows re-executed after the stream ended: {late}")
    if worker.poll() is not None:
        problems.append(f"the worker exited ({worker.returncode})")
    report(
        "every job published twice",
        verdict,
        problems,
        faults=duplicator.sent + len(stream.same_key),
        raw_duplicate_messages=duplicator.sent,
        same_key_submits=len(stream.same_key),
        worker_start_s=round(boot, 1),
        stream_s=round(elapsed, 1),
    )
    assert not problems, f"{problems}\n--- worker log ---\n{rig.log_tail()}"
