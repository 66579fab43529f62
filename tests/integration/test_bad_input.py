"""Bad input: refused by the client before anything is queued, and again by the worker."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery

from api_client import EmbedQ
from api_client.errors import BadRequest, LimitExceeded, UnknownCollection, UnknownModel
from tests import helpers


@pytest.mark.parametrize(
    ("texts", "options", "error", "message"),
    [
        ("one string", {}, BadRequest, "texts: expected a list of strings, got str"),
        ([], {}, BadRequest, "texts: the list is empty"),
        (["ok", None], {}, BadRequest, "texts[1]: expected a string, got NoneType"),
        (["ok", "ok", " "], {}, BadRequest, "texts[2]: the text is empty or only whitespace"),
        (["ok", "x" * 2001], {}, LimitExceeded, "texts[1]: 2,001 characters is over the limit of 2,000"),
        (["x"] * 3001, {}, LimitExceeded, "3,001 texts is over the limit of 3,000 per job"),
        (["ok"], {"model": "no-such-model"}, UnknownModel, "unknown model 'no-such-model'; known models:"),
        (["ok"], {"precision": "int4"}, BadRequest, "precision: Input should be"),
        (["ok"], {"batch_size": 0}, BadRequest, "batch_size: Input should be greater than or equal to 1"),
        (["ok"], {"truncate_dim": 999}, BadRequest, "truncate_dim: 999 is more than the model's dimension 384"),
        (["ok"], {"prompt_name": "passage"}, BadRequest, "has no prompt 'passage' (its prompts: document, query)"),
    ],
)
def test_client_refuses_before_queueing(eq: EmbedQ, db, texts, options, error, message) -> None:
    eq.encode(["warm up the models table"]).result(timeout=60)
    db.execute("TRUNCATE jobs CASCADE")
    with pytest.raises(error) as caught:
        eq.encode(texts, **options)
    assert message in caught.value.message
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


@pytest.fixture
def plain_celery(broker_url: str):
    """A Celery app that knows nothing of embedq but the broker URL."""
    app = Celery(broker=broker_url)
    yield app
    app.close()


def send(app: Celery, *args: object, task: str = "embedq.encode", **kwargs: object) -> str:
    task_id = str(uuid.uuid4())
    app.send_task(task, args=args or None, kwargs=kwargs, queue="embedq.cpu.interactive", task_id=task_id)
    return task_id


def failed_row(db, job_id: str) -> dict:
    helpers.wait_until(
        lambda: db.execute("SELECT status FROM jobs WHERE id = %s AND status = 'failed'", (job_id,)).fetchone(),
        what=f"job {job_id} to fail",
    )
    return helpers.job_row(db, job_id)


@pytest.mark.parametrize(
    ("request_body", "error", "message"),
    [
        ({"texts": []}, "BadRequest", "texts: the list is empty"),
        ({"texts": ["fine", 3]}, "BadRequest", "texts[1]: expected a string, got int"),
        ({"texts": ["fine"] * 3001}, "LimitExceeded", "over the limit of 3,000 per job"),
        ({"texts": ["fine"], "precision": "int3"}, "BadRequest", "precision:"),
        ("not an object", "BadRequest", "request: expected a JSON object, got str"),
    ],
)
def test_worker_refuses_bad_inline_requests_and_records_why(
    eq: EmbedQ,
    db,
    plain_celery: Celery,
    request_body: object,
    error: str,
    message: str,
) -> None:
    task_id = send(plain_celery, request=request_body)
    row = failed_row(db, task_id)
    assert row["error"]["type"] == error
    assert message in row["error"]["message"]
    assert row["error"]["retriable"] is False


def test_worker_fails_an_unknown_model_with_a_typed_error(eq: EmbedQ, db, plain_celery: Celery) -> None:
    task_id = send(plain_celery, request={"texts": ["hello"], "model": "nope/not-here"})
    failed_row(db, task_id)
    with pytest.raises(UnknownModel, match="unknown model 'nope/not-here'"):
        eq.job(task_id).result(timeout=10)


def test_worker_survives_garbage_messages(eq: EmbedQ, db, plain_celery: Celery) -> None:
    wrong_shape = send(plain_celery, "positional", "args")
    unknown_key = send(plain_celery, texts=["hello"])
    not_a_uuid = send(plain_celery, job_id="job-1")
    send(plain_celery, job_id=str(uuid.uuid4()))  # names a job that does not exist
    plain_celery.send_task(
        "embedq.encode", kwargs={"request": {"texts": ["pickled"]}}, queue="embedq.cpu.interactive", serializer="pickle"
    )
    plain_celery.send_task("embedq.no_such_task", kwargs={}, queue="embedq.cpu.interactive")

    for task_id in (wrong_shape, unknown_key, not_a_uuid):
        assert "expected keyword arguments" in failed_row(db, task_id)["error"]["message"]
    # After all of that, the same worker still runs jobs; the pickled message was never run.
    assert eq.encode(["still alive"]).result(timeout=60).shape == (1, 384)
    assert db.execute("SELECT count(*) FROM jobs WHERE request::text LIKE '%pickled%'").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("kind", "request_body", "error", "message"),
    [
        ("search", {"collection": "no-such-collection", "queries": ["x"]}, UnknownCollection, "no collection"),
        ("upsert", {"collection": "no-such-collection", "documents": [{"id": "a", "text": "x"}]}, UnknownCollection,
         "no collection"),
        ("reindex", {"collection": "tickets", "id_from": "d00100"}, BadRequest, "id_from: only the service sets it"),
        ("reindex", {"collection": "tickets", "model": "nope/not-here"}, UnknownModel, "unknown model"),
        ("search", {"collection": "tickets", "queries": ["x"], "rerank": "all-MiniLM-L6-v2"}, UnknownModel,
         "not a registered cross-encoder"),
    ],
)  # fmt: skip
def test_the_client_and_a_plain_celery_message_refuse_a_collection_request_alike(
    eq: EmbedQ, db, plain_celery: Celery, kind: str, request_body: dict, error: type, message: str
) -> None:
    eq.create_collection("tickets")
    with pytest.raises(error, match=message) as refused:
        eq.submit(kind, request_body)
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0  # refused before any row or message

    task_id = send(plain_celery, task=f"embedq.{kind}", request=request_body)
    row = failed_row(db, task_id)
    assert row["error"] == refused.value.to_record()
    with pytest.raises(error) as again:
        eq.job(task_id).result(timeout=10)
    assert again.value.message == refused.value.message
