"""The sha256 of each index version's folder, recorded when it is published.

``index_versions.sha256``: ``folder_sha256`` of the version's artifact folder
(its files and manifest), written in the transaction that makes the version
ready. A worker loading the version compares it, so files rewritten together
with their manifest are refused, never searched. Versions built before this
migration have none and are checked against their manifest only; the next
build records one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("index_versions", sa.Column("sha256", sa.Text))


def downgrade() -> None:
    op.drop_column("index_versions", "sha256")
