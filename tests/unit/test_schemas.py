from __future__ import annotations

import json

import pytest

from api_client.errors import BadRequest, LimitExceeded
from api_client.kinds.encode import EncodeRequest
from api_client.requests import Limits

LIMITS = Limits(max_texts_per_job=5, max_chars_per_text=20, max_batch_size=64)


def parse(**request: object):
    return EncodeRequest.parse({"texts": ["a text"], **request}, LIMITS)


def test_defaults_match_sentence_transformers() -> None:
    request = parse()
    assert request.texts == ["a text"]
    assert request.model_dump(exclude={"texts"}) == {
        "model": "all-MiniLM-L6-v2",
        "normalize": False,
        "batch_size": 32,
        "precision": "float32",
        "truncate_dim": None,
        "prompt_name": None,
        "prompt": None,
        "backend": None,
    }


@pytest.mark.parametrize(
    ("texts", "message", "index"),
    [
        ("just one string", "expected a list of strings, got str", None),
        (None, "expected a list of strings, got NoneType", None),
        ([], "the list is empty", None),
        (["ok", 7], "texts[1]: expected a string, got int", 1),
        (["ok", "ok", ""], "texts[2]: the text is empty", 2),
        (["ok", "   \n"], "texts[1]: the text is empty or only whitespace", 1),
        (["a\x00b"], "texts[0]: the text contains a NUL character", 0),
    ],
)
def test_bad_texts_name_the_offending_index(texts: object, message: str, index: int | None) -> None:
    with pytest.raises(BadRequest) as caught:
        EncodeRequest.parse({"texts": texts}, LIMITS)
    assert message in caught.value.message
    assert caught.value.detail.get("index") == index
    assert caught.value.detail["field"] == "texts"


def test_too_many_texts_names_the_limit() -> None:
    with pytest.raises(LimitExceeded) as caught:
        EncodeRequest.parse({"texts": ["x"] * 6}, LIMITS)
    assert "6 texts is over the limit of 5 per job (max_texts_per_job)" in caught.value.message
    assert caught.value.detail == {"field": "texts", "limit": "max_texts_per_job", "max": 5, "actual": 6}


def test_too_long_text_names_the_limit_and_index() -> None:
    with pytest.raises(LimitExceeded) as caught:
        EncodeRequest.parse({"texts": ["short", "x" * 21]}, LIMITS)
    assert caught.value.message.startswith("texts[1]: 21 characters is over the limit of 20")
    assert caught.value.detail["index"] == 1
    assert caught.value.detail["limit"] == "max_chars_per_text"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"precision": "int4"}, "precision"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "32"}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"normalize": "yes"}, "normalize"),
        ({"truncate_dim": 0}, "truncate_dim"),
        ({"model": ""}, "model"),
        ({"model": 5}, "model"),
        ({"normalise": True}, "normalise"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(**options)
    assert caught.value.message.startswith(f"{field}: ")
    assert caught.value.detail["field"] == field


def test_unknown_option_lists_the_allowed_ones() -> None:
    with pytest.raises(BadRequest, match="unknown option .*normalize"):
        parse(normalise=True)


def test_batch_size_limit() -> None:
    with pytest.raises(LimitExceeded, match="batch_size: 65 is over the limit of 64"):
        parse(batch_size=65)


def test_prompt_and_prompt_name_together_are_refused() -> None:
    with pytest.raises(BadRequest, match="give one or the other"):
        parse(prompt="query: ", prompt_name="query")


def test_request_must_be_an_object_with_texts() -> None:
    with pytest.raises(BadRequest, match="expected a JSON object"):
        EncodeRequest.parse(["a"], LIMITS)
    with pytest.raises(BadRequest, match="texts: missing"):
        EncodeRequest.parse({"model": "x"}, LIMITS)


@pytest.mark.parametrize("field", ["prompt", "prompt_name", "model"])
def test_nul_in_string_options_is_refused(field: str) -> None:
    with pytest.raises(BadRequest, match=f"{field}: contains a NUL character"):
        parse(**{field: "a\x00b"})


def test_hub_ids_of_bundled_models_become_their_short_name() -> None:
    assert parse(model="sentence-transformers/all-MiniLM-L6-v2").model == "all-MiniLM-L6-v2"


def test_text_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(BadRequest, match=r"texts\[1\]: the text is not valid Unicode"):
        EncodeRequest.parse({"texts": ["fine", "broken \ud800"]}, LIMITS)


def test_odd_option_names_are_shown_escaped() -> None:
    with pytest.raises(BadRequest) as caught:
        parse(**{"bad\x00key": 1})
    assert caught.value.message.startswith("'bad\\x00key': unknown option")


def test_the_prompt_counts_against_the_text_limit() -> None:
    with pytest.raises(LimitExceeded, match="prompt: 21 characters is over the limit of 20"):
        parse(prompt="p" * 21)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"texts": ["a"], "truncate_dim": float("nan")}, "truncate_dim: nan is not a JSON number"),
        ({"texts": ["a"], "extra": [1.0, float("inf")]}, r"extra\[1\]: inf is not a JSON number"),
        ({"texts": ["a"], "batch_size": 10**5000}, "batch_size: an integer of 16,610 bits is out of range"),
    ],
)
def test_nan_infinity_and_huge_integers_are_refused_anywhere_in_a_request(raw: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        EncodeRequest.parse(raw, LIMITS)


def test_top_k_and_idempotency_keys_are_bounded() -> None:
    from api_client.kinds.similarity import ParaphrasesRequest
    from api_client.requests import check_idempotency_key

    assert ParaphrasesRequest.parse({"texts": ["a", "b"], "top_k": 1000}).top_k == 1000
    with pytest.raises(LimitExceeded, match=r"top_k: 1001 is over the limit of 1000 \(max_k\)"):
        ParaphrasesRequest.parse({"texts": ["a", "b"], "top_k": 1001})
    assert check_idempotency_key("order-17") == "order-17"
    for bad in (3, ["k"], "", " ", "k" * 201, "a\x00b", "\ud800"):
        with pytest.raises(BadRequest, match="idempotency_key: "):
            check_idempotency_key(bad)


def test_refused_requests_are_recorded_as_storable_json() -> None:
    from api_client.jsonsafe import json_safe

    deep: list = []
    for _ in range(5000):
        deep = [deep]
    safe = json_safe({"x": float("nan"), "n": 10**30, "d": deep, "t": "a\x00b"})
    assert safe["x"] == "nan" and safe["n"] == "<an integer of 100 bits>" and safe["t"] == "a\ufffdb"
    assert json.dumps(safe, allow_nan=False).count("[") == 31  # the dict is level 1: cut past 32, no RecursionError
