"""Job kinds made generic: chunked parent jobs, array outputs, model versions keyed by backend.

- ``jobs.parent_id`` / ``chunk_index`` / ``item_offset``: a chunk job of a parent; ``jobs.chunks`` /
  ``chunks_done``: how many chunks a parent has and how many succeeded. A trigger finishes the
  parent in the transaction of its last chunk, fails or cancels it with any chunk, and cancels the
  open chunks of a parent that ended; it also marks a queued parent running when a chunk starts.
- ``job_arrays``: numpy outputs of a job (similarity matrices, paraphrase pairs), by (job, name).
- ``models.backend``: a model version is its files, dtype and backend (torch, onnx, ...).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHUNK_FUNCTION = """
CREATE FUNCTION embedq_job_family() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent jobs%ROWTYPE;
BEGIN
    IF NEW.chunks > 0 THEN
        -- a parent that ended: its open chunks end with it
        IF NEW.status IN ('failed', 'cancelled') THEN
            UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), lease_expires_at = NULL
             WHERE parent_id = NEW.id AND status IN ('queued', 'running');
        END IF;
        RETURN NULL;
    END IF;
    IF NEW.status = 'running' THEN
        UPDATE jobs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now()
         WHERE id = NEW.parent_id AND status = 'queued';
    ELSIF NEW.status = 'succeeded' THEN
        UPDATE jobs SET chunks_done = chunks_done + 1, updated_at = now()
         WHERE id = NEW.parent_id AND status IN ('queued', 'running')
        RETURNING * INTO parent;
        IF FOUND AND parent.chunks_done >= parent.chunks THEN
            UPDATE jobs SET status = 'succeeded', error = NULL, progress_done = progress_total,
                   finished_at = now(), updated_at = now(), lease_expires_at = NULL,
                   result = (NEW.result - 'unique') || (
                       SELECT jsonb_build_object(
                           'count', parent.progress_total,
                           'chunks', parent.chunks,
                           'cached', coalesce(sum((c.result->>'cached')::bigint), 0),
                           'encoded', coalesce(sum((c.result->>'encoded')::bigint), 0))
                         FROM jobs c WHERE c.parent_id = parent.id)
             WHERE id = parent.id;
        END IF;
    ELSIF NEW.status IN ('failed', 'cancelled') THEN
        UPDATE jobs SET status = NEW.status, error = NEW.error, finished_at = now(), updated_at = now(),
               lease_expires_at = NULL
         WHERE id = NEW.parent_id AND status IN ('queued', 'running');
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.add_column("jobs", sa.Column("parent_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE")))
    op.add_column("jobs", sa.Column("chunk_index", sa.Integer))
    op.add_column("jobs", sa.Column("item_offset", sa.Integer, nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("chunks", sa.Integer, nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"))
    op.create_index("jobs_parent_idx", "jobs", ["parent_id"], postgresql_where=sa.text("parent_id IS NOT NULL"))
    op.create_table(
        "job_arrays",
        sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("dtype", sa.Text, nullable=False),
        sa.Column("shape", ARRAY(sa.Integer), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.add_column("models", sa.Column("backend", sa.Text, nullable=False, server_default="torch"))
    op.drop_constraint("models_name_sha256_dtype_key", "models", type_="unique")
    op.create_unique_constraint(
        "models_name_sha256_dtype_backend_key", "models", ["name", "sha256", "dtype", "backend"]
    )
    op.execute(CHUNK_FUNCTION)
    op.execute(
        "CREATE TRIGGER jobs_family AFTER UPDATE OF status ON jobs FOR EACH ROW "
        "WHEN (OLD.status IS DISTINCT FROM NEW.status AND (NEW.parent_id IS NOT NULL OR NEW.chunks > 0)) "
        "EXECUTE FUNCTION embedq_job_family()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_family ON jobs")
    op.execute("DROP FUNCTION IF EXISTS embedq_job_family()")
    op.execute("DELETE FROM jobs WHERE parent_id IS NOT NULL")
    op.drop_constraint("models_name_sha256_dtype_backend_key", "models", type_="unique")
    op.execute("DELETE FROM models WHERE backend <> 'torch'")
    op.create_unique_constraint("models_name_sha256_dtype_key", "models", ["name", "sha256", "dtype"])
    op.drop_column("models", "backend")
    op.drop_table("job_arrays")
    op.drop_index("jobs_parent_idx", table_name="jobs")
    for column in ("chunks_done", "chunks", "item_offset", "chunk_index", "parent_id"):
        op.drop_column("jobs", column)
