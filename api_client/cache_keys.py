"""Content keys of texts: what the embedding cache is keyed by."""

from __future__ import annotations

import hashlib


def text_sha256(text: str, prompt: str | None = None) -> bytes:
    """The cache key of ``text`` as fed to the model.

    ``sha256(utf8(text))`` with no prompt; ``sha256(utf8(prompt) + b"\\x00" + utf8(text))``
    with one (texts cannot contain NUL, so the two forms never collide).
    """
    data = text.encode() if prompt is None else prompt.encode() + b"\x00" + text.encode()
    return hashlib.sha256(data).digest()
