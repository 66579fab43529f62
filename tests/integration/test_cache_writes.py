"""Two workers caching the same text at once: the first write wins, the second job still finishes."""

from __future__ import annotations

import numpy as np

from api_client.cache_keys import text_sha256
from api_client.store import embeddings as embeddings_read
from embedq.worker.cache import Pending, write_once_more_on_conflict
from embedq.worker.store import embeddings as embeddings_store
from embedq.worker.store import models as models_store


def test_a_key_cached_meanwhile_by_another_worker_is_skipped(db) -> None:
    model = models_store.upsert_model(
        conn=db, name="cache-race", sha256="c" * 64, artifact_path="/nowhere", dimension=4, max_seq_length=8, config={}
    )
    first, second = text_sha256("first"), text_sha256("second")
    theirs = np.array([[1, 1, 1, 1]], dtype=np.float32)
    with db.transaction():  # the other worker got there first
        embeddings_store.write_embeddings(conn=db, model_id=model.id, keys=[first], vectors=theirs)

    pending = Pending(model.id)
    pending.add([second, first], np.array([[2, 2, 2, 2], [3, 3, 3, 3]], dtype=np.float32))
    attempts: list[bool] = []

    def body(skip_existing: bool) -> None:
        attempts.append(skip_existing)
        pending.write(db, skip_existing=skip_existing)

    write_once_more_on_conflict(db, body)
    assert attempts == [False, True]
    vectors = embeddings_read.read_vectors(conn=db, model_id=model.id, keys=[first, second])
    np.testing.assert_array_equal(vectors, [[1, 1, 1, 1], [2, 2, 2, 2]])
