"""A client that is not embedq's: it submits with plain Celery and JSON, and reads results with plain SQL.

The Celery app knows only the broker and the result backend, where embedq's workers record the
outcome of each task sent with its request inline; the vectors themselves are read from
PostgreSQL (docs/tables.md, "Reading a job with plain SQL"). `embedq up` writes the three URLs
(EMBEDQ_BROKER_URL, EMBEDQ_RESULT_BACKEND, EMBEDQ_DATABASE_URL) into its env file, which this
script reads unless they are set in the environment. Run it while embedq is up (`make run` in
another shell), from the repository root:

    .venv/bin/python examples/plain_celery.py
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import psycopg
from celery import Celery
from dotenv import dotenv_values

QUEUE = "embedq.cpu.interactive"
TICKETS = ["my card was charged twice", "I was billed two times for one order", "the app crashes at login"]

VECTORS_SQL = """
SELECT o.item, l2_normalize(e.embedding)::real[]
FROM encode_outputs o
JOIN embeddings e USING (model_id, text_sha256)
WHERE o.job_id = %s
ORDER BY o.item
"""


def settings() -> dict[str, Any]:
    """The environment over the env file `embedq up` writes."""
    return {**dotenv_values(os.environ.get("EMBEDQ_ENV_FILE", ".embedq/env")), **os.environ}


def main() -> None:
    env = settings()
    with Celery("plain-client", broker=env["EMBEDQ_BROKER_URL"], backend=env["EMBEDQ_RESULT_BACKEND"]) as app:
        encode = app.send_task("embedq.encode", kwargs={"request": {"texts": TICKETS, "normalize": True}}, queue=QUEUE)
        similarity = app.send_task(
            "embedq.similarity", kwargs={"request": {"queries": TICKETS[:1], "texts": TICKETS[1:]}}, queue=QUEUE
        )
        for sent in (encode, similarity):
            outcome = sent.get(timeout=60)
            print(f"{outcome['kind']} job {outcome['job_id']}: {outcome['status']}")
            if outcome["error"]:
                raise SystemExit(f"  {outcome['error']['type']}: {outcome['error']['message']}")

    with psycopg.connect(env["EMBEDQ_DATABASE_URL"]) as conn:
        rows = conn.execute(VECTORS_SQL, (encode.id,)).fetchall()
        scores = conn.execute(
            "SELECT data FROM job_arrays WHERE job_id = %s AND name = 'scores'", (similarity.id,)
        ).fetchone()
    vectors = np.array([vector for _item, vector in rows], dtype=np.float32)
    print(f"vectors of job {encode.id} read with SQL: {vectors.shape[0]} x {vectors.shape[1]}")
    print("cosine of the first ticket with the others, from those vectors:", np.round(vectors[1:] @ vectors[0], 4))
    print("the same from the similarity job's scores:", np.round(np.frombuffer(scores[0], dtype="<f4"), 4))


if __name__ == "__main__":
    main()
