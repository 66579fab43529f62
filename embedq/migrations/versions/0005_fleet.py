"""The fleet: what each worker process publishes with its heartbeat.

An ``embedq worker`` runs one Celery consumer process per lane (or per GPU);
each keeps its own ``workers`` row, named by its Celery node name. The new
columns say what the row's process is and what it runs:

- ``node``: the worker name the operator gave (``--name``, ``%h`` expanded),
  shared by the consumer processes of one ``embedq worker``;
- ``supervisor_pid`` and ``consumers``: the ``embedq worker`` process that
  started this one and how many consumers it runs (readiness waits for all);
- ``lanes``, ``backend``, ``devices``, ``threads``: the lanes it consumes, the
  backend setting it runs with, its devices (``cpu`` or CUDA device ids) and
  the intra-op threads of each pool process;
- ``pool_pids``: the pids of its pool processes, which claim jobs as
  ``<name>/<pid>`` (``jobs.worker``): the fleet's current jobs.

Defaults describe a worker of an earlier release, which writes none of them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _columns() -> tuple[sa.Column, ...]:
    """Built afresh per call: a ``Column`` belongs to the one table it was added to."""
    return (
        sa.Column("node", sa.Text),
        sa.Column("supervisor_pid", sa.Integer),
        sa.Column("consumers", sa.Integer, nullable=False, server_default="1"),
        sa.Column("lanes", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("backend", sa.Text, nullable=False, server_default="torch"),
        sa.Column("devices", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("threads", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pool_pids", ARRAY(sa.Integer), nullable=False, server_default="{}"),
    )


def upgrade() -> None:
    for column in _columns():
        op.add_column("workers", column)


def downgrade() -> None:
    for column in reversed(_columns()):
        op.drop_column("workers", column.name)
