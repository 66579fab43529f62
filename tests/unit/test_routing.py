from __future__ import annotations

import pytest

from api_client.errors import QueueNotFound as TreeQueueNotFound
from api_client.errors import from_record
from api_client.routing import QUEUES, QueueNotFound, Thresholds, queue_name, route

SMALL = Thresholds(interactive_max_items=10, interactive_max_chars=1000)


def encode(n_items: int, n_chars: int = 10, **kwargs: object) -> str:
    return route(n_items=n_items, n_chars=n_chars, thresholds=SMALL, **kwargs)  # type: ignore[arg-type]


def test_small_encodes_are_interactive_on_cpu() -> None:
    assert encode(10, gpu_alive=False) == "embedq.cpu.interactive"
    assert encode(10, gpu_alive=True) == "embedq.cpu.interactive"


def test_large_encodes_are_batch_and_go_to_gpu_only_while_one_is_alive() -> None:
    assert encode(11, gpu_alive=False) == "embedq.cpu.batch"
    assert encode(11, gpu_alive=True) == "embedq.gpu.batch"
    assert encode(5, n_chars=1001, gpu_alive=False) == "embedq.cpu.batch"


def test_hints_override_size_but_not_a_missing_gpu() -> None:
    assert encode(1, gpu_alive=False, lane="batch") == "embedq.cpu.batch"
    assert encode(1000, gpu_alive=False, lane="interactive") == "embedq.cpu.interactive"
    assert encode(1, gpu_alive=True, hardware="gpu") == "embedq.gpu.interactive"
    assert encode(1, gpu_alive=False, hardware="gpu") == "embedq.cpu.interactive"
    assert encode(1000, gpu_alive=True, hardware="cpu") == "embedq.cpu.batch"


def test_undeclared_queues_are_refused() -> None:
    with pytest.raises(QueueNotFound, match="no queue 'embedq.tpu.batch'"):
        queue_name("tpu", "batch")
    with pytest.raises(QueueNotFound):
        encode(1, gpu_alive=False, lane="bulk")
    assert set(QUEUES) == {"embedq.cpu.interactive", "embedq.cpu.batch", "embedq.gpu.interactive", "embedq.gpu.batch"}


def test_queue_not_found_is_in_the_error_tree_and_round_trips() -> None:
    assert QueueNotFound is TreeQueueNotFound
    with pytest.raises(QueueNotFound) as caught:
        queue_name("tpu", "batch")
    again = from_record(caught.value.to_record())
    assert type(again) is QueueNotFound
    assert again.detail == {"queue": "embedq.tpu.batch"}


def test_a_job_is_resent_to_its_queue_while_consumed_else_to_a_consumed_one_of_its_lane() -> None:
    from api_client.routing import DEFAULT_QUEUE, target_queue

    assert target_queue("embedq.gpu.batch", {"embedq.gpu.batch", "embedq.cpu.batch"}) == "embedq.gpu.batch"
    assert target_queue("embedq.gpu.batch", {"embedq.cpu.batch", "embedq.cpu.interactive"}) == "embedq.cpu.batch"
    assert target_queue("embedq.gpu.interactive", {"embedq.cpu.batch"}) == "embedq.cpu.batch"
    assert target_queue("embedq.gpu.batch", set()) == "embedq.gpu.batch"
    assert target_queue("someone.elses", set()) == DEFAULT_QUEUE
