from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from api_client.errors import NotConfigured
from api_client.settings import get_settings


def test_urls_come_from_the_env_file_when_not_in_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# written by embedq up\nEMBEDQ_BROKER_URL=redis://h:1/0\nEMBEDQ_DATABASE_URL=postgresql://x\n")
    settings = get_settings({"EMBEDQ_ENV_FILE": str(env_file), "EMBEDQ_DATABASE_URL": "postgresql://env"})
    assert settings.broker_url == "redis://h:1/0"
    assert settings.database_url == "postgresql://env"


def test_default_env_file_is_under_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "env").write_text("EMBEDQ_BROKER_URL=redis://a\nEMBEDQ_DATABASE_URL=postgresql://b\n")
    settings = get_settings({"EMBEDQ_DATA_DIR": str(tmp_path)})
    assert settings.require_urls() == ("redis://a", "postgresql://b")
    assert get_settings({"EMBEDQ_DATA_DIR": str(tmp_path)}, env_file=False).broker_url is None


def test_missing_urls_say_how_to_get_them(tmp_path: Path) -> None:
    settings = get_settings({"EMBEDQ_DATA_DIR": str(tmp_path), "EMBEDQ_BROKER_URL": "redis://x"})
    with pytest.raises(NotConfigured, match=r"EMBEDQ_DATABASE_URL not set, .* \(no such file\).* run `embedq up`"):
        settings.require_urls()
    (tmp_path / "env").write_text("EMBEDQ_BROKER_URL=redis://y\n")
    settings = get_settings({"EMBEDQ_DATA_DIR": str(tmp_path)})
    with pytest.raises(
        NotConfigured,
        match=f"EMBEDQ_DATABASE_URL not set, neither in the environment nor in the env file {tmp_path}/env",
    ):
        settings.require_database()


def test_visibility_timeout_must_outlast_the_hard_time_limit() -> None:
    with pytest.raises(ValidationError, match="soft_time_limit < time_limit < visibility_timeout"):
        get_settings({"EMBEDQ_TIME_LIMIT": "4000", "EMBEDQ_VISIBILITY_TIMEOUT": "3600"}, env_file=False)


def test_numbers_are_parsed_and_checked() -> None:
    assert get_settings({"EMBEDQ_MAX_TEXTS_PER_JOB": "7"}, env_file=False).max_texts_per_job == 7
    with pytest.raises(ValidationError):
        get_settings({"EMBEDQ_MAX_TEXTS_PER_JOB": "0"}, env_file=False)


def test_the_env_file_is_read_as_a_shell_writes_it(tmp_path) -> None:
    path = tmp_path / "env"
    path.write_text(
        "# written by hand\n"
        'EMBEDQ_BROKER_URL="redis://user:p#ss@host:6379/0"\n'
        "export EMBEDQ_DATABASE_URL='postgresql://u@h/db'  # the service's database\n"
        "EMBEDQ_CHUNK_SIZE=750\n"
    )
    settings = get_settings({"EMBEDQ_ENV_FILE": str(path)})
    assert settings.broker_url == "redis://user:p#ss@host:6379/0"
    assert settings.database_url == "postgresql://u@h/db" and settings.chunk_size == 750
    # The environment wins over the file.
    assert get_settings({"EMBEDQ_ENV_FILE": str(path), "EMBEDQ_CHUNK_SIZE": "10"}).chunk_size == 10
