"""The Celery settings the delivery guarantees rest on."""

from __future__ import annotations

from api_client.celery_conf import PLAIN_QUEUE, celery_config
from api_client.routing import QUEUES
from api_client.settings import get_settings


def test_json_only_late_acks_prefetch_one_and_consistent_timeouts() -> None:
    settings = get_settings({"EMBEDQ_BROKER_URL": "redis://x"}, env_file=False)
    conf = celery_config(settings)
    assert conf["task_serializer"] == "json" and conf["accept_content"] == ["json"]
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_soft_time_limit"] < conf["task_time_limit"]
    assert conf["task_time_limit"] < conf["broker_transport_options"]["visibility_timeout"]
    assert conf["task_time_limit"] < 30 * 60  # RabbitMQ's default consumer_timeout
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False
    assert conf["result_backend"] is None and conf["task_ignore_result"]
    assert {queue.name for queue in conf["task_queues"]} == {*QUEUES, PLAIN_QUEUE}


def test_every_kind_has_one_task_that_never_gives_up_retrying() -> None:
    from api_client.kinds import KINDS
    from embedq.worker.tasks import TASKS

    assert set(TASKS) == {spec.task_name for spec in KINDS.values()}
    for task in TASKS.values():
        assert task.max_retries is None  # attempts are capped in the jobs row instead


def test_workers_record_outcomes_in_celerys_database_backend_on_the_embedq_database(monkeypatch) -> None:
    monkeypatch.setenv("EMBEDQ_BROKER_URL", "redis://x")
    monkeypatch.setenv("EMBEDQ_DATABASE_URL", "postgresql://u@db.example/embedq")
    from embedq.worker.app import _config

    conf = _config()
    assert conf["result_backend"] == "db+postgresql+psycopg://u@db.example/embedq"
    assert conf["task_ignore_result"] is False
