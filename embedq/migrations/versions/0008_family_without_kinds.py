"""The job-family trigger knows no kind: chunk summaries merge in Python.

``embedq_job_family`` keeps counting a parent's chunks and moving its state
(running with its first chunk; failed or cancelled with any chunk, which
cancels the others; succeeded, or queued again when it finalizes itself,
with its last one). It no longer builds the parent's summary from fields of
particular kinds (encode's and upsert's counts, encode's token figures):
the last chunk's worker merges the chunks' summaries with the kind's
``merge`` (``api_client.kinds``) in the same transaction
(``embedq.worker.finishing``), so the parent leaves the trigger with no
summary and gets one before that transaction commits. The function is
written out whole here; the downgrade restores revision 0006's.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
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
            -- the last chunk's worker merges the summaries before its transaction commits
            UPDATE jobs SET status = 'succeeded', error = NULL, progress_done = progress_total, result = NULL,
                   finished_at = now(), updated_at = now(), lease_expires_at = NULL
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


def _revision_0006_function() -> str:
    spec = importlib.util.spec_from_file_location("embedq_0006", Path(__file__).with_name("0006_fast_path.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.family_function())


def upgrade() -> None:
    op.execute(FAMILY_FUNCTION)


def downgrade() -> None:
    op.execute(_revision_0006_function())
