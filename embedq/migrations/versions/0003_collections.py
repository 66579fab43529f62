"""Collections, their documents and FAISS index versions; search outputs; parents that finalize.

- ``collections``: a named corpus bound to one model version (``model_id``, set by its first
  upsert) and to its active index version.
- ``documents``: upserted by (collection, external id); every change takes a new ``seq`` from
  ``documents_seq``, so "changed since the index was built" is ``seq > index_versions.max_seq``.
  A delete keeps the row as a tombstone (``deleted``) until the next build folds it in. The
  vector is the cache row (``model_id``, ``text_sha256``) of ``embeddings``: a foreign key, so a
  document never points at a vector that does not exist.
- ``index_versions``: FAISS builds of a collection, written as artifacts on disk.
- ``search_results``: a search job's hits, by (job, query).
- ``jobs.finalize``: a parent whose last chunk makes it runnable (``queued``) instead of done.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FAMILY_FUNCTION = """
CREATE OR REPLACE FUNCTION embedq_job_family() RETURNS trigger LANGUAGE plpgsql AS $$
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
         WHERE id = NEW.parent_id AND status = 'queued' AND chunks_done < chunks;
    ELSIF NEW.status = 'succeeded' THEN
        UPDATE jobs SET chunks_done = chunks_done + 1, updated_at = now()
         WHERE id = NEW.parent_id AND status IN ('queued', 'running')
        RETURNING * INTO parent;
        IF FOUND AND parent.chunks_done >= parent.chunks AND parent.finalize THEN
            -- its own runner finishes it: runnable now (the last chunk's worker sends its message)
            UPDATE jobs SET status = 'queued', sent_at = now(), lease_expires_at = NULL, updated_at = now()
             WHERE id = parent.id;
        ELSIF FOUND AND parent.chunks_done >= parent.chunks THEN
            UPDATE jobs SET status = 'succeeded', error = NULL, progress_done = progress_total,
                   finished_at = now(), updated_at = now(), lease_expires_at = NULL,
                   result = (NEW.result - 'unique') || (
                       SELECT jsonb_build_object(
                           'count', parent.progress_total,
                           'chunks', parent.chunks,
                           'cached', coalesce(sum((c.result->>'cached')::bigint), 0),
                           'encoded', coalesce(sum((c.result->>'encoded')::bigint), 0))
                       || CASE WHEN bool_or(c.result ? 'changed')
                               THEN jsonb_build_object('changed', sum((c.result->>'changed')::bigint))
                               ELSE '{}'::jsonb END
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
    op.add_column("jobs", sa.Column("finalize", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute(FAMILY_FUNCTION)
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("normalize", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("active_index_id", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.execute("CREATE SEQUENCE documents_seq")
    op.create_table(
        "documents",
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("external_id", sa.Text, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("text_sha256", sa.LargeBinary, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False, server_default=sa.text("nextval('documents_seq')")),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(
            ["model_id", "text_sha256"],
            ["embeddings.model_id", "embeddings.text_sha256"],
            name="documents_embedding_fkey",
        ),
    )
    op.create_index("documents_seq_idx", "documents", ["collection_id", "seq"])
    op.create_index("documents_metadata_idx", "documents", ["metadata"], postgresql_using="gin")
    op.create_table(
        "index_versions",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="building"),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("artifact_path", sa.Text),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("job_id", UUID(as_uuid=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("collection_id", "version", name="index_versions_collection_version_key"),
        sa.CheckConstraint("status IN ('building', 'ready', 'failed')", name="index_versions_status_check"),
    )
    op.create_foreign_key("collections_active_index_fkey", "collections", "index_versions", ["active_index_id"], ["id"])
    op.create_table(
        "search_results",
        sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("item", sa.Integer, primary_key=True),
        sa.Column("hits", JSONB, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("search_results")
    op.drop_constraint("collections_active_index_fkey", "collections", type_="foreignkey")
    op.drop_table("index_versions")
    op.drop_table("documents")
    op.execute("DROP SEQUENCE documents_seq")
    op.drop_table("collections")
    op.execute("DELETE FROM jobs WHERE finalize")
    op.execute(_previous_function())
    op.drop_column("jobs", "finalize")


def _previous_function() -> str:
    """Revision 0002's ``embedq_job_family`` (no finalizing parents), to restore on downgrade."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "embedq_0002", Path(__file__).with_name("0002_kinds_chunks_backends.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.CHUNK_FUNCTION).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
