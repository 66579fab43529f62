"""Where each worker serves its Prometheus metrics.

``workers.metrics_url``: the ``/metrics`` URL of the ``embedq worker`` a
consumer belongs to (its processes' samples summed), published with its
heartbeat; ``embedq status --json`` lists it per live worker, and the
dashboard and Prometheus's service discovery can read it from here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("metrics_url", sa.Text))


def downgrade() -> None:
    op.drop_column("workers", "metrics_url")
