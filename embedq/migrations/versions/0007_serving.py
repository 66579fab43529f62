"""Which backend each model version serves, decided once for the fleet; a chunked job's pinned version.

- ``model_serving``: per model version (name, sha256, dtype), the backend that
  requests with ``backend="auto"`` get (a ``models`` row backend such as
  ``openvino`` or ``openvino-bf16-amx``), who promoted it and when, and the
  backends served before it (``history``, oldest first). No row: torch fp32.
  Changed only by an explicit promotion (``embedq models promote`` or the
  gate that the first ``embedq up`` runs), never by a worker on its own.
- ``jobs.model_id``: the model version (hence backend) a chunked job's chunks
  all compute with, pinned on the parent by the first chunk that resolves
  one, so a promotion while the job runs cannot mix two backends in it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_serving",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("sha256", sa.Text, primary_key=True),
        sa.Column("dtype", sa.Text, primary_key=True),
        sa.Column("backend", sa.Text, nullable=False),
        sa.Column("promoted_by", sa.Text, nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("history", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.add_column("jobs", sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", name="jobs_model_id_fkey")))


def downgrade() -> None:
    op.drop_column("jobs", "model_id")
    op.drop_table("model_serving")
