"""Values made storable as PostgreSQL ``jsonb``, which refuses NUL and lone surrogates."""

from __future__ import annotations

from typing import Any


def clean_text(text: str) -> str:
    """``text`` with NUL and unpaired surrogates replaced by U+FFFD."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "\ufffd")


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``jsonb`` accepts: strings cleaned, keys made strings, other objects ``repr``-ed."""
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {clean_text(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return clean_text(repr(value))
