"""Values made storable as PostgreSQL ``jsonb``, which refuses NUL and lone surrogates."""

from __future__ import annotations

import math
from typing import Any


def clean_text(text: str) -> str:
    """``text`` with NUL and unpaired surrogates replaced by U+FFFD."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "\ufffd")


MAX_DEPTH = 32
"""Levels of nested objects and lists a request may hold (``api_client.requests.check_size``), and that a record
keeps; deeper ones are replaced by a marker."""
MAX_INT_BITS = 63
"""Integers that fit PostgreSQL's bigint (and print in any message)."""


def unstorable_number(value: Any) -> bool:
    """Whether ``value`` is a number ``jsonb`` cannot hold as one: NaN, infinity, an integer past ``MAX_INT_BITS``."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS


def json_safe(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that ``jsonb`` accepts: strings cleaned, keys made strings, NaN, infinity and integers
    past 64 bits named in a string, levels past ``MAX_DEPTH`` cut, other objects ``repr``-ed."""
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int | float):
        return _number(value)
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        return f"<nested deeper than {MAX_DEPTH} levels>"
    if isinstance(value, dict):
        return {clean_text(str(key)): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item, depth + 1) for item in value]
    return clean_text(repr(value))


def _number(value: Any) -> Any:
    if not unstorable_number(value):
        return value
    return str(value) if isinstance(value, float) else f"<an integer of {value.bit_length()} bits>"
