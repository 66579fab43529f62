from __future__ import annotations

import pytest

from worker.cli import build_parser, main


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], "embedq: a job service"),
        (["up"], "--data-dir"),
        (["worker"], "--hardware"),
        (["migrate"], "--downgrade"),
        (["encode"], "--precision"),
        (["jobs"], "--status"),
        (["job"], "id"),
        (["cancel"], "id"),
        (["sweep"], "re-send"),
        (["models"], "add"),
    ],
)
def test_every_command_has_help(command: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    assert expected in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["frobnicate"])
    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
