"""A chunked encode's parent sums its chunks' token figures.

Encode summaries report ``tokens``, ``padded_tokens``, ``batches``,
``batch_splits`` and ``padding_waste`` (token-budget batching). The parent of
chunk jobs took them from its last chunk; ``embedq_job_family`` now sums the
counts over the chunks and computes the parent's padding waste from the sums.
The function is revision 0003's with that one addition.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_MERGED_FROM = "\n                         FROM jobs c WHERE c.parent_id = parent.id)"
"""Where 0003's function ends the parent's merged summary, before the chunks it reads."""

TOKEN_SUMS = """
                       || CASE WHEN bool_or(c.result ? 'padded_tokens') THEN jsonb_build_object(
                              'tokens', sum((c.result->>'tokens')::bigint),
                              'padded_tokens', sum((c.result->>'padded_tokens')::bigint),
                              'batches', sum((c.result->>'batches')::bigint),
                              'batch_splits', sum((c.result->>'batch_splits')::bigint),
                              'padding_waste', CASE WHEN sum((c.result->>'padded_tokens')::bigint) > 0
                                  THEN round(1 - sum((c.result->>'tokens')::bigint)::numeric
                                                 / sum((c.result->>'padded_tokens')::bigint), 4)
                                  ELSE 0 END)
                               ELSE '{}'::jsonb END"""


def _revision_0003() -> ModuleType:
    spec = importlib.util.spec_from_file_location("embedq_0003", Path(__file__).with_name("0003_collections.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _previous_function() -> str:
    return str(_revision_0003().FAMILY_FUNCTION)


def family_function() -> str:
    """0003's ``embedq_job_family`` with the token sums added to a finished parent's summary."""
    previous = _previous_function()
    if previous.count(_MERGED_FROM) != 1:
        raise RuntimeError("revision 0003's embedq_job_family is not the one this revision extends")
    return previous.replace(_MERGED_FROM, TOKEN_SUMS + _MERGED_FROM)


def upgrade() -> None:
    op.execute(family_function())


def downgrade() -> None:
    op.execute(_previous_function())
