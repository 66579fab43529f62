"""Classifiers, their versions, and per-item JSON outputs of classify and triage jobs.

- ``classifiers``: a named classifier over one embedding model, with its active version and the
  versions active before it (``history``, most recent last: what a rollback returns to).
- ``classifier_versions``: each trained (or zero-shot) version: method, labels, parameters,
  held-out metrics, abstention threshold, fingerprint of its training data, its parent version
  and, for trained heads, the artifact folder (manifest + sha256) holding its parameters.
  ``model_id`` is the embedding model version whose vectors it reads (for SetFit, its own
  fine-tuned body, recorded in ``models`` with the base model as parent).
- ``item_results``: one JSON output per input item of a job (a prediction, a triage record).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classifiers",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("active_version", sa.Integer),
        sa.Column("history", ARRAY(sa.Integer), nullable=False, server_default=sa.text("'{}'::integer[]")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "classifier_versions",
        sa.Column("classifier_id", sa.Integer, sa.ForeignKey("classifiers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("labels", JSONB, nullable=False),
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("threshold", sa.Float),
        sa.Column("fingerprint", sa.Text),
        sa.Column("parent_version", sa.Integer),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("artifact_path", sa.Text),
        sa.Column("sha256", sa.Text),
        sa.Column("job_id", UUID(as_uuid=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "item_results",
        sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("item", sa.Integer, primary_key=True),
        sa.Column("output", JSONB, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("item_results")
    op.drop_table("classifier_versions")
    op.drop_table("classifiers")
