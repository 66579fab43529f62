from __future__ import annotations

import argparse

import pytest

from embedq.worker.cli import build_parser, main


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], "embedq: a job service"),
        (["up"], "--data-dir"),
        (["worker"], "--hardware"),
        (["migrate"], "--downgrade"),
        (["encode"], "--precision"),
        (["result"], "--output"),
        (["jobs"], "--status"),
        (["job"], "id"),
        (["cancel"], "id"),
        (["sweep"], "re-send"),
        (["models"], "add"),
        (["models", "list"], "backend"),
        (["models", "add"], "modules.json"),
        (["status"], "--json"),
    ],
)
def test_every_command_has_help(command: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    assert expected in capsys.readouterr().out


def _parsers(parser: argparse.ArgumentParser, path: str = "embedq") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_option_and_argument_has_help_text() -> None:
    parsers = _parsers(build_parser())
    assert {"embedq result", "embedq status", "embedq models list", "embedq models add"} <= {p for p, _ in parsers}
    missing = [
        f"{path} {action.option_strings or action.dest}"
        for path, parser in parsers
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]
    assert missing == []


def test_every_command_has_a_description() -> None:
    parsers = _parsers(build_parser())
    assert [path for path, parser in parsers if not parser.description] == []


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"embedq {version('embedq')}"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["frobnicate"])
    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
