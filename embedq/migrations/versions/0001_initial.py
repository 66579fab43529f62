"""Initial schema: models, jobs, embeddings, encode outputs, quantization ranges, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOTIFY_FUNCTION = """
CREATE FUNCTION embedq_notify_job_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('succeeded', 'failed', 'cancelled')
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        PERFORM pg_notify('embedq_jobs', NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
"""


def _require_pgvector() -> None:
    bind = op.get_bind()
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if available is None:
        version = bind.execute(sa.text("SHOW server_version")).scalar()
        raise RuntimeError(
            f"this PostgreSQL server ({version}) has no pgvector extension, which embedq needs for its "
            "embeddings table: install pgvector on it (https://github.com/pgvector/pgvector), use a server "
            "that has it, or leave EMBEDQ_DATABASE_URL unset so that `embedq up` starts an embedded one"
        )
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")


def upgrade() -> None:
    _require_pgvector()
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("dtype", sa.Text, nullable=False, server_default="float32"),
        sa.Column("artifact_path", sa.Text, nullable=False),
        sa.Column("dimension", sa.Integer),
        sa.Column("max_seq_length", sa.Integer),
        sa.Column("config", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("registered_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("name", "sha256", "dtype", name="models_name_sha256_dtype_key"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("request_sha256", sa.Text, nullable=False),
        sa.Column("progress_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("progress_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("result", JSONB),
        sa.Column("error", JSONB),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("worker", sa.Text),
        sa.Column("idempotency_key", sa.Text, unique=True),
        sa.Column("sends", sa.Integer, nullable=False, server_default="1"),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="jobs_status_check"
        ),
    )
    op.create_index("jobs_created_at_idx", "jobs", [sa.text("created_at DESC")])
    op.create_index(
        "jobs_open_idx", "jobs", ["status", "queue"], postgresql_where=sa.text("status IN ('queued', 'running')")
    )
    op.create_table(
        "embeddings",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("text_sha256", sa.LargeBinary, primary_key=True),
        sa.Column("embedding", VECTOR(), nullable=False),
    )
    op.create_table(
        "encode_outputs",
        sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("item", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("text_sha256", sa.LargeBinary, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id", "text_sha256"],
            ["embeddings.model_id", "embeddings.text_sha256"],
            name="encode_outputs_embedding_fkey",
        ),
    )
    op.create_table(
        "quantization_ranges",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("dimension", sa.Integer, primary_key=True),
        sa.Column("normalized", sa.Boolean, primary_key=True),
        sa.Column("minimums", ARRAY(sa.REAL), nullable=False),
        sa.Column("maximums", ARRAY(sa.REAL), nullable=False),
        sa.Column("calibration", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("hardware", sa.Text, nullable=False),
        sa.Column("queues", ARRAY(sa.Text), nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER jobs_notify_done AFTER INSERT OR UPDATE OF status ON jobs "
        "FOR EACH ROW EXECUTE FUNCTION embedq_notify_job_done()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_notify_done ON jobs")
    op.execute("DROP FUNCTION IF EXISTS embedq_notify_job_done()")
    for table in ("workers", "quantization_ranges", "encode_outputs", "embeddings", "jobs", "models"):
        op.drop_table(table)
