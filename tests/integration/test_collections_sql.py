"""The worked example of docs/tables.md: searching a collection with plain SQL and pgvector.

The collection is built through the client; the search is psycopg and SQL only,
and must find what ``eq.search`` finds.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import psycopg
import pytest

from api_client import EmbedQ
from tests.integration.test_collections import TICKETS, docs

COSINE = """
SELECT d.external_id, 1 - (e.embedding <=> %(q)s::vector) AS score
FROM documents d
JOIN collections c ON c.id = d.collection_id
JOIN embeddings e ON e.model_id = d.model_id AND e.text_sha256 = d.text_sha256
WHERE c.name = %(collection)s AND NOT d.deleted {filter}
ORDER BY e.embedding <=> %(q)s::vector
LIMIT %(k)s
"""

DOT = """
SELECT d.external_id, -(e.embedding <#> %(q)s::vector) AS score
FROM documents d
JOIN collections c ON c.id = d.collection_id
JOIN embeddings e ON e.model_id = d.model_id AND e.text_sha256 = d.text_sha256
WHERE c.name = %(collection)s AND NOT d.deleted
ORDER BY e.embedding <#> %(q)s::vector
LIMIT %(k)s
"""

QUERIES = ["double charge on my card", "the mobile app will not log me in", "forgot my password"]


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form, ``'[0.1,0.2,...]'``; ``repr`` of each float32 as a double reads back exactly."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def sql_search(database_url: str, sql: str, **params: object) -> list[tuple[str, float]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return [(row[0], float(row[1])) for row in conn.execute(sql, params).fetchall()]


def assert_same_hits(sql_hits: list[tuple[str, float]], hits: list[dict]) -> None:
    assert [doc_id for doc_id, _ in sql_hits] == [hit["id"] for hit in hits]
    assert max(abs(score - hit["score"]) for (_, score), hit in zip(sql_hits, hits, strict=True)) < 1e-4


@pytest.fixture
def collection(eq: EmbedQ) -> str:
    """A normalized (cosine) collection of the tickets, with an index, a change and a delete since."""
    name = f"c-{uuid.uuid4().hex[:10]}"
    eq.create_collection(name, normalize=True)
    eq.upsert(name, docs()).wait(timeout=60)
    eq.build_index(name).wait(timeout=120)
    eq.upsert(name, [{"id": "T-7", "text": "Refund the second payment", "metadata": {"team": "billing"}}]).wait(60)
    eq.delete(name, ["T-4"]).wait(timeout=60)
    return name


def test_cosine_search_in_sql_finds_what_search_finds(eq: EmbedQ, database_url: str, collection: str) -> None:
    vectors = eq.encode(QUERIES).result(timeout=60)  # raw vectors: cosine distance ignores their length
    expected = eq.search(collection, QUERIES, k=5).result(timeout=60)
    for vector, hits in zip(vectors, expected, strict=True):
        found = sql_search(database_url, COSINE.format(filter=""), q=vector_literal(vector), collection=collection, k=5)
        assert_same_hits(found, hits)
    assert "T-4" not in [hit["id"] for hits in expected for hit in hits]


def test_a_metadata_filter_in_sql(eq: EmbedQ, database_url: str, collection: str) -> None:
    query = "the mobile app will not log me in"
    vector = eq.encode([query]).result(timeout=60)[0]
    expected = eq.search(collection, [query], k=5, filter={"team": "billing"}).result(timeout=60)[0]
    found = sql_search(
        database_url,
        COSINE.format(filter="AND d.metadata @> %(filter)s::jsonb"),
        q=vector_literal(vector),
        collection=collection,
        filter=json.dumps({"team": "billing"}),
        k=5,
    )
    assert_same_hits(found, expected)
    assert {doc_id for doc_id, _ in found} == {"T-1", "T-6", "T-7"}  # T-4 is deleted


def test_dot_product_search_in_sql(eq: EmbedQ, database_url: str) -> None:
    name = f"c-{uuid.uuid4().hex[:10]}"
    eq.create_collection(name, normalize=False)
    eq.upsert(name, docs(TICKETS)).wait(timeout=60)
    vector = eq.encode([QUERIES[0]]).result(timeout=60)[0]
    expected = eq.search(name, [QUERIES[0]], k=5).result(timeout=60)[0]
    found = sql_search(database_url, DOT, q=vector_literal(vector), collection=name, k=5)
    assert_same_hits(found, expected)  # all-MiniLM-L6-v2 ends in Normalize: here dot and cosine agree
