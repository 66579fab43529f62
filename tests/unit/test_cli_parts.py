"""The command line's pure parts: reading lines, naming lines in errors, the schema head, masked URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from api_client.db import public_url
from api_client.errors import BadRequest, LimitExceeded
from embedq.worker.cli.jobs import by_line, read_lines
from embedq.worker.cli.status import migration_heads

MIGRATIONS = Path(__file__).resolve().parents[2] / "embedq" / "migrations"


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("a\nb\n", ["a", "b"]),
        ("a\nb\n\n", ["a", "b"]),
        ("a\nb\r\n \n\t\n", ["a", "b"]),
        ("a\n\nb\n", ["a", "", "b"]),
        ("  \na\n", ["  ", "a"]),
        ("a\u2028b\rc", ["a\u2028b\rc"]),
        ("\n\n", []),
    ],
)
def test_read_lines_skips_blank_lines_only_at_the_end(data: str, lines: list[str]) -> None:
    assert read_lines(data) == lines


def test_a_text_error_names_the_line_and_keeps_its_class() -> None:
    where = {"field": "texts", "index": 4}
    error = by_line(LimitExceeded("texts[4]: 61,200 characters is over the limit", detail=where))
    assert type(error) is LimitExceeded
    assert error.message == "line 5: 61,200 characters is over the limit"
    assert error.detail["line"] == 5


def test_other_errors_are_left_as_they_are() -> None:
    error = BadRequest("texts: the list is empty; send at least one text", detail={"field": "texts"})
    assert by_line(error) is error


def test_schema_head_is_derived_from_the_migration_files() -> None:
    from alembic.script import ScriptDirectory

    from embedq import migrations

    script = ScriptDirectory.from_config(migrations.alembic_config("postgresql://unused/unused"))
    assert migration_heads() == sorted(script.get_heads())
    assert migration_heads(MIGRATIONS / "versions") == sorted(script.get_heads())


def test_schema_head_follows_a_new_revision(tmp_path: Path) -> None:
    (tmp_path / "0001_a.py").write_text('revision = "0001"\ndown_revision = None\n')
    (tmp_path / "0002_b.py").write_text('revision: str = "0002"\ndown_revision: str | None = "0001"\n')
    assert migration_heads(tmp_path) == ["0002"]
    (tmp_path / "0003_c.py").write_text('revision = "0003"\ndown_revision = ("0002",)\n')
    assert migration_heads(tmp_path) == ["0003"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("amqp://guest:s3cret@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        ("postgresql://embedq:s3cret@db/embedq?sslmode=require", "postgresql://embedq:***@db/embedq?sslmode=require"),
        ("postgresql://embedq@db/embedq?password=s3cret", "postgresql://embedq@db/embedq?password=***"),
        ("postgresql://postgres:@/postgres?host=/tmp/pg", "postgresql://postgres:@/postgres?host=/tmp/pg"),
    ],
)
def test_urls_are_shown_without_password(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_errors_on_the_command_line_name_commands_not_client_methods() -> None:
    from embedq.worker.cli import in_cli_terms

    said = in_cli_terms("collection: no collection 'x' (collections: none); create it with create_collection")
    assert said.endswith("create it with `embedq collections create NAME`")
    said = in_cli_terms("create one with create_classifier() or train one with train_classifier()")
    assert (
        said
        == "create one with `embedq classifiers create NAME --labels FILE` or train one with `embedq train NAME FILE`"
    )
    assert in_cli_terms("the model's create_collection_options field") == "the model's create_collection_options field"
