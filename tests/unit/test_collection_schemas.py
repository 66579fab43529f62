"""Validation of collection requests, and which hardware class serves a collection."""

from __future__ import annotations

import pytest

from api_client.collections import hardware_of
from api_client.errors import BadRequest, LimitExceeded
from api_client.schemas import Limits
from api_client.schemas_collections import (
    check_collection_name,
    parse_build_request,
    parse_search_request,
    parse_upsert_request,
)

LIMITS = Limits(max_texts_per_job=5, max_k=50, max_queries=3)


@pytest.mark.parametrize("name", ["tickets", "support-2026", "a", "x_y"])
def test_slug_names_are_accepted(name: str) -> None:
    assert check_collection_name(name) == name


@pytest.mark.parametrize("name", ["", "Tickets", "../etc", "a/b", "-lead", "x" * 64, 3, None])
def test_other_names_are_refused(name: object) -> None:
    with pytest.raises(BadRequest, match="not a valid name"):
        check_collection_name(name)


def test_upsert_checks_each_document_and_names_it() -> None:
    with pytest.raises(BadRequest, match=r"documents\[1\]\.id: 'a' is also documents\[0\]"):
        parse_upsert_request(
            {"collection": "c", "documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, LIMITS
        )
    with pytest.raises(BadRequest, match=r"documents\[0\]\.metadata: expected a JSON object"):
        parse_upsert_request({"collection": "c", "documents": [{"id": "a", "text": "x", "metadata": [1]}]}, LIMITS)
    with pytest.raises(BadRequest, match=r"documents\[0\]: expected an object"):
        parse_upsert_request({"collection": "c", "documents": [{"id": "a", "text": "x", "extra": 1}]}, LIMITS)
    with pytest.raises(LimitExceeded, match="max_texts_per_job"):
        parse_upsert_request({"collection": "c", "documents": [{"id": str(i), "text": "x"} for i in range(6)]}, LIMITS)
    parsed = parse_upsert_request({"collection": "c", "documents": [{"id": "a", "text": "x"}]}, LIMITS)
    assert parsed.documents == [{"id": "a", "text": "x", "metadata": {}}]


def test_search_bounds_k_queries_and_filters() -> None:
    def search(**options: object) -> object:
        return parse_search_request({"collection": "c", "queries": ["q"], **options}, LIMITS)

    with pytest.raises(LimitExceeded, match="max_k"):
        search(k=51)
    with pytest.raises(LimitExceeded, match="max_queries"):
        parse_search_request({"collection": "c", "queries": ["a", "b", "c", "d"]}, LIMITS)
    with pytest.raises(BadRequest, match="filter.team: .* got list"):
        search(filter={"team": ["a"]})
    with pytest.raises(BadRequest, match="filter.score"):
        search(filter={"score": float("nan")})
    with pytest.raises(BadRequest, match="include"):
        search(include=["vector"])
    assert search(filter={"team": "billing", "priority": 1, "open": True}).filter == {
        "team": "billing",
        "priority": 1,
        "open": True,
    }
    assert search(k=5, rerank="ce", rerank_top=2).rerank_top == 5  # never fewer candidates than k


def test_index_parameters_are_named_positive_integers() -> None:
    with pytest.raises(BadRequest, match="params.depth"):
        parse_build_request({"collection": "c", "params": {"depth": 3}}, LIMITS)
    with pytest.raises(BadRequest, match="params.nprobe"):
        parse_build_request({"collection": "c", "params": {"nprobe": 0}}, LIMITS)
    assert parse_build_request({"collection": "c", "kind": "ivf", "params": {"nprobe": 4}}, LIMITS).params == {
        "nprobe": 4
    }


def test_a_collection_is_served_by_the_hardware_class_of_its_model_version() -> None:
    assert hardware_of({"dtype": "float16"}) == "gpu"
    assert hardware_of({"dtype": "float32"}) == "cpu"
    assert hardware_of({"dtype": None}) == "cpu"  # not bound yet
