"""Validation of collection requests, and which hardware class serves a collection."""

from __future__ import annotations

from typing import Any

import pytest

from api_client.collections import hardware_of
from api_client.errors import BadRequest, LimitExceeded, UnknownCollection, UnknownModel
from api_client.kinds.collections import BuildRequest, DeleteRequest, ReindexRequest, SearchRequest, UpsertRequest
from api_client.requests import Context, Limits, Request

LIMITS = Limits(max_texts_per_job=5, max_k=50, max_queries=3)


@pytest.mark.parametrize("name", ["tickets", "support-2026", "a", "x_y"])
def test_slug_names_are_accepted(name: str) -> None:
    assert BuildRequest.parse({"collection": name}, LIMITS).collection == name


@pytest.mark.parametrize("name", ["", "Tickets", "../etc", "a/b", "-lead", "x" * 64, 3, None])
def test_other_names_are_refused(name: object) -> None:
    with pytest.raises(BadRequest, match="collection: .* is not a valid name"):
        BuildRequest.parse({"collection": name}, LIMITS)


def test_upsert_checks_each_document_and_names_it() -> None:
    def upsert(*documents: object) -> UpsertRequest:
        return UpsertRequest.parse({"collection": "c", "documents": list(documents)}, LIMITS)

    with pytest.raises(BadRequest, match=r"documents\[1\]\.id: 'a' is also documents\[0\]"):
        upsert({"id": "a", "text": "x"}, {"id": "a", "text": "y"})
    with pytest.raises(BadRequest, match=r"documents\[0\]\.metadata: expected a JSON object"):
        upsert({"id": "a", "text": "x", "metadata": [1]})
    with pytest.raises(BadRequest, match=r"documents\[0\]\.metadata\.score: nan is not a JSON number"):
        upsert({"id": "a", "text": "x", "metadata": {"score": float("nan")}})  # jsonb has no NaN
    with pytest.raises(BadRequest, match=r"documents\[1\]: expected an object"):
        upsert({"id": "a", "text": "x"}, {"id": "b", "text": "x", "extra": 1})
    with pytest.raises(BadRequest, match=r"documents\[0\]\.id: expected a non-empty string id, got 7"):
        upsert({"id": 7, "text": "x"})
    with pytest.raises(BadRequest, match=r"documents\[0\]\.id: ids are at most 512 characters"):
        upsert({"id": "x" * 513, "text": "x"})
    with pytest.raises(BadRequest, match=r"documents\.text\[1\]: the text is empty or only whitespace"):
        upsert({"id": "a", "text": "x"}, {"id": "b", "text": " "})
    with pytest.raises(LimitExceeded, match="max_texts_per_job"):
        upsert(*({"id": str(i), "text": "x"} for i in range(6)))
    with pytest.raises(BadRequest, match="documents: expected a non-empty list"):
        upsert()
    parsed = upsert({"id": "a", "text": "x"}, {"id": "b", "text": "y", "metadata": None})
    assert parsed.model_dump()["documents"] == [
        {"id": "a", "text": "x", "metadata": {}},
        {"id": "b", "text": "y", "metadata": {}},
    ]
    assert parsed.texts == ["x", "y"]
    assert UpsertRequest.parse(parsed.model_dump(), LIMITS) == parsed  # what the worker parses again


def test_delete_names_the_bad_id() -> None:
    with pytest.raises(BadRequest, match=r"ids\[1\]: expected a non-empty string id"):
        DeleteRequest.parse({"collection": "c", "ids": ["a", ""]}, LIMITS)
    with pytest.raises(LimitExceeded, match="ids: 6 is over the limit of 5"):
        DeleteRequest.parse({"collection": "c", "ids": list("abcdef")}, LIMITS)
    assert DeleteRequest.parse({"collection": "c", "ids": ["a", "b"]}, LIMITS).ids == ["a", "b"]


def test_search_bounds_k_queries_and_filters() -> None:
    def search(**options: object) -> SearchRequest:
        return SearchRequest.parse({"collection": "c", "queries": ["q"], **options}, LIMITS)

    with pytest.raises(LimitExceeded, match="max_k"):
        search(k=51)
    with pytest.raises(LimitExceeded, match="k: 60 is over the limit of 50"):
        search(k=5, rerank="ce", rerank_top=60)  # a rerank's candidates count too
    with pytest.raises(LimitExceeded, match="max_queries"):
        SearchRequest.parse({"collection": "c", "queries": ["a", "b", "c", "d"]}, LIMITS)
    with pytest.raises(BadRequest, match="filter.team: .* got list"):
        search(filter={"team": ["a"]})
    with pytest.raises(BadRequest, match="filter.score"):
        search(filter={"score": float("nan")})
    with pytest.raises(BadRequest, match="threshold"):
        search(threshold=float("nan"))
    with pytest.raises(BadRequest, match="include"):
        search(include=["vector"])
    assert search(filter={"team": "billing", "priority": 1, "open": True}).filter == {
        "team": "billing",
        "priority": 1,
        "open": True,
    }
    assert search(k=5, rerank="ce", rerank_top=2).rerank_top == 5  # never fewer candidates than k
    assert search(include=["text", "text"]).include == ["text"]


def test_index_parameters_are_named_positive_integers() -> None:
    with pytest.raises(BadRequest, match="params.depth"):
        BuildRequest.parse({"collection": "c", "params": {"depth": 3}}, LIMITS)
    with pytest.raises(BadRequest, match="params.nprobe"):
        BuildRequest.parse({"collection": "c", "params": {"nprobe": 0}}, LIMITS)
    with pytest.raises(BadRequest, match="kind"):
        BuildRequest.parse({"collection": "c", "kind": "lsh"}, LIMITS)
    assert BuildRequest.parse({"collection": "c", "kind": "ivf", "params": {"nprobe": 4}}, LIMITS).params == {
        "nprobe": 4
    }
    with pytest.raises(BadRequest, match="min_recall"):
        ReindexRequest.parse({"collection": "c", "min_recall": float("nan")}, LIMITS)


@pytest.mark.parametrize("field", ["id_from", "id_to"])
def test_a_reindex_chunks_bounds_are_the_services_alone(field: str) -> None:
    raw = {"collection": "c", field: "d00100"}
    with pytest.raises(BadRequest, match=f"{field}: only the service sets it") as refused:
        ReindexRequest.parse(raw, LIMITS)
    assert refused.value.detail == {"field": field}
    assert getattr(ReindexRequest.parse(raw, Context(LIMITS, internal=True)), field) == "d00100"
    assert ReindexRequest.parse({"collection": "c", field: None}, LIMITS).id_from is None  # as a parent is stored


class Catalog:
    """What exists: the collection ``tickets``, the cross-encoder ``ce`` and the model ``registered``."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def collection(self, name: str) -> dict[str, Any]:
        self.asked.append(("collection", name))
        if name != "tickets":
            raise UnknownCollection(f"collection: no collection {name!r}", detail={"field": "collection"})
        return {"id": 1, "name": name, "model": "all-MiniLM-L6-v2", "dtype": "float32"}

    def cross_encoder(self, name: str) -> Any:
        self.asked.append(("cross_encoder", name))
        if name != "ce":
            raise UnknownModel(f"rerank: {name!r} is not a registered cross-encoder", detail={"field": "rerank"})
        return object()

    def model(self, name: str) -> Any:
        self.asked.append(("model", name))
        if name != "registered":
            raise UnknownModel(f"model: unknown model {name!r}", detail={"field": "model"})
        return None

    def classifier(self, _name: str) -> Any:
        raise AssertionError("no collection request names a classifier")


def test_the_names_a_request_uses_are_checked_against_the_catalog() -> None:
    catalog = Catalog()
    context = Context(LIMITS, catalog=catalog)
    requests: dict[type[Request], dict[str, Any]] = {
        UpsertRequest: {"documents": [{"id": "a", "text": "x"}]},
        DeleteRequest: {"ids": ["a"]},
        BuildRequest: {},
        SearchRequest: {"queries": ["q"]},
        ReindexRequest: {},
    }
    for request, fields in requests.items():
        with pytest.raises(UnknownCollection, match="no collection 'nope'"):
            request.parse({"collection": "nope", **fields}, context)
        assert request.parse({"collection": "tickets", **fields}, context)
    with pytest.raises(UnknownModel, match="not a registered cross-encoder"):
        SearchRequest.parse({"collection": "tickets", "queries": ["q"], "rerank": "all-MiniLM-L6-v2"}, context)
    SearchRequest.parse({"collection": "tickets", "queries": ["q"], "rerank": "ce"}, context)
    with pytest.raises(UnknownModel, match="unknown model 'nope'"):
        ReindexRequest.parse({"collection": "tickets", "model": "nope"}, context)
    ReindexRequest.parse({"collection": "tickets", "model": "registered"}, context)
    asked = len(catalog.asked)
    ReindexRequest.parse({"collection": "tickets", "model": "all-MiniLM-L6-v2"}, context)  # bundled: no lookup
    assert catalog.asked[asked:] == [("collection", "tickets")]
    with pytest.raises(BadRequest, match="not a valid name"):
        BuildRequest.parse({"collection": "Bad Name"}, context)
    assert ("collection", "Bad Name") not in catalog.asked  # a bad name is refused before any lookup
    assert ("collection", "nope") in catalog.asked
    assert BuildRequest.parse({"collection": "nope"}, Context(LIMITS)).collection == "nope"  # no catalog, no check


def test_a_collection_is_served_by_the_hardware_class_of_its_model_version() -> None:
    assert hardware_of({"dtype": "float16"}) == "gpu"
    assert hardware_of({"dtype": "float32"}) == "cpu"
    assert hardware_of({"dtype": None}) == "cpu"  # not bound yet


def test_metadata_filters_and_index_parameters_are_capped() -> None:
    def upsert(metadata: object) -> UpsertRequest:
        return UpsertRequest.parse({"collection": "c", "documents": [{"id": "a", "text": "x", "metadata": metadata}]})

    assert upsert({"team": "billing", "tags": ["a", "b"]}).documents[0].metadata["team"] == "billing"
    with pytest.raises(BadRequest, match=r"documents\[0\]\.metadata: 20,0\d\d characters as JSON is over the limit"):
        upsert({"blob": "x" * 20_000})
    deep: dict = {}
    node = deep
    for _ in range(10):
        node["n"] = node = {}
    with pytest.raises(BadRequest, match=r"documents\[0\]\.metadata: nested deeper than 8 levels"):
        upsert(deep)

    with pytest.raises(LimitExceeded, match="filter: 33 keys is over the limit of 32"):
        SearchRequest.parse({"collection": "c", "queries": ["q"], "filter": {f"k{i}": i for i in range(33)}})
    with pytest.raises(LimitExceeded, match="filter.'team': keys and string values are at most 1024"):
        SearchRequest.parse({"collection": "c", "queries": ["q"], "filter": {"team": "x" * 2000}})

    assert BuildRequest.parse({"collection": "c", "params": {"M": 128, "nlist": 65_536}}).params == {
        "M": 128,
        "nlist": 65_536,
    }
    with pytest.raises(LimitExceeded, match=r"params\.M: 100,000 is over the limit of 128") as caught:
        BuildRequest.parse({"collection": "c", "params": {"M": 100_000}})
    assert caught.value.detail["max"] == 128
    with pytest.raises(LimitExceeded, match=r"params\.efSearch: 1,000,000,000 is over the limit of 4,096"):
        BuildRequest.parse({"collection": "c", "params": {"efSearch": 10**9}})


def test_a_request_over_its_total_size_or_nested_too_deep_is_refused_before_its_fields() -> None:
    small = Limits(max_texts_per_job=10, max_chars_per_text=100, max_request_chars=600)
    UpsertRequest.parse({"collection": "c", "documents": [{"id": f"d{i}", "text": "x" * 45} for i in range(10)]}, small)
    with pytest.raises(LimitExceeded, match="request: over 600 characters in all") as caught:
        UpsertRequest.parse(
            {"collection": "c", "documents": [{"id": f"d{i}", "text": "x" * 60} for i in range(10)]}, small
        )
    assert caught.value.detail["limit"] == "max_request_chars"
    nested: list = []
    for _ in range(100_000):  # deep enough to exhaust a recursive walker's stack
        nested = [nested]
    with pytest.raises(LimitExceeded, match="request: nested deeper than 32 levels"):
        UpsertRequest.parse({"collection": "c", "documents": nested})
