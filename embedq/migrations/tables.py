"""Table definitions: the shape of the schema that the Alembic migrations create.

``embedq.migrations/`` is the only source of schema; these definitions mirror it
(a test compares them with a migrated database) and document it for readers
of plain SQL. See docs/tables.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from api_client.states import JobStatus

metadata = sa.MetaData()

JOB_STATUSES = tuple(str(status) for status in JobStatus)

models = sa.Table(
    "models",
    metadata,
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
    sa.Column("backend", sa.Text, nullable=False, server_default="torch"),
    sa.UniqueConstraint("name", "sha256", "dtype", "backend", name="models_name_sha256_dtype_backend_key"),
)

model_serving = sa.Table(
    "model_serving",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("sha256", sa.Text, primary_key=True),
    sa.Column("dtype", sa.Text, primary_key=True),
    sa.Column("backend", sa.Text, nullable=False),
    sa.Column("promoted_by", sa.Text, nullable=False),
    sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("history", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
)

jobs = sa.Table(
    "jobs",
    metadata,
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
    sa.Column("parent_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE")),
    sa.Column("chunk_index", sa.Integer),
    sa.Column("item_offset", sa.Integer, nullable=False, server_default="0"),
    sa.Column("chunks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finalize", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", name="jobs_model_id_fkey")),
    sa.CheckConstraint(f"status IN {JOB_STATUSES}", name="jobs_status_check"),
    sa.Index("jobs_created_at_idx", sa.text("created_at DESC")),
    sa.Index("jobs_open_idx", "status", "queue", postgresql_where=sa.text("status IN ('queued', 'running')")),
    sa.Index("jobs_parent_idx", "parent_id", postgresql_where=sa.text("parent_id IS NOT NULL")),
)

job_arrays = sa.Table(
    "job_arrays",
    metadata,
    sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("dtype", sa.Text, nullable=False),
    sa.Column("shape", ARRAY(sa.Integer), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

embeddings = sa.Table(
    "embeddings",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("text_sha256", sa.LargeBinary, primary_key=True),
    sa.Column("embedding", VECTOR(), nullable=False),
)

encode_outputs = sa.Table(
    "encode_outputs",
    metadata,
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

quantization_ranges = sa.Table(
    "quantization_ranges",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("dimension", sa.Integer, primary_key=True),
    sa.Column("normalized", sa.Boolean, primary_key=True),
    sa.Column("minimums", ARRAY(sa.REAL), nullable=False),
    sa.Column("maximums", ARRAY(sa.REAL), nullable=False),
    sa.Column("calibration", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("hardware", sa.Text, nullable=False),
    sa.Column("queues", ARRAY(sa.Text), nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("node", sa.Text),
    sa.Column("supervisor_pid", sa.Integer),
    sa.Column("consumers", sa.Integer, nullable=False, server_default="1"),
    sa.Column("lanes", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("backend", sa.Text, nullable=False, server_default="torch"),
    sa.Column("devices", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("threads", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pool_pids", ARRAY(sa.Integer), nullable=False, server_default="{}"),
    sa.Column("metrics_url", sa.Text),
)

collections = sa.Table(
    "collections",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
    sa.Column("normalize", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column(
        "active_index_id",
        sa.Integer,
        sa.ForeignKey("index_versions.id", name="collections_active_index_fkey", use_alter=True),
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

documents_seq = sa.Sequence("documents_seq", metadata=metadata)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("external_id", sa.Text, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("model_id", sa.Integer, nullable=False),
    sa.Column("text_sha256", sa.LargeBinary, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False, server_default=sa.text("nextval('documents_seq'::regclass)")),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.ForeignKeyConstraint(
        ["model_id", "text_sha256"],
        ["embeddings.model_id", "embeddings.text_sha256"],
        name="documents_embedding_fkey",
    ),
    sa.Index("documents_seq_idx", "collection_id", "seq"),
    sa.Index("documents_metadata_idx", "metadata", postgresql_using="gin"),
)

index_versions = sa.Table(
    "index_versions",
    metadata,
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
    sa.Column("sha256", sa.Text),
    sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("job_id", UUID(as_uuid=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("collection_id", "version", name="index_versions_collection_version_key"),
    sa.CheckConstraint("status IN ('building', 'ready', 'failed')", name="index_versions_status_check"),
)

search_results = sa.Table(
    "search_results",
    metadata,
    sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("item", sa.Integer, primary_key=True),
    sa.Column("hits", JSONB, nullable=False),
)

classifiers = sa.Table(
    "classifiers",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("active_version", sa.Integer),
    sa.Column("history", ARRAY(sa.Integer), nullable=False, server_default=sa.text("'{}'::integer[]")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

classifier_versions = sa.Table(
    "classifier_versions",
    metadata,
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

item_results = sa.Table(
    "item_results",
    metadata,
    sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("item", sa.Integer, primary_key=True),
    sa.Column("output", JSONB, nullable=False),
)
