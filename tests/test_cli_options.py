"""The `wiz` command's own options: `--version`, `--json` as a plain flag in every
command's help, and the Warnings of a Configure answer on stderr."""

from __future__ import annotations

import functools
import re

import httpx
import pytest
import typer.main
from typer.testing import CliRunner

from wiz_executor import __version__
from wiz_executor.cli import _common, app
from wiz_executor.client import Client

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wiz-executor {__version__}"


def _commands_with_json() -> list[list[str]]:
    """Every command path (`["send"]`, `["pipeline", "run"]`) that takes --json."""
    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
        elif any("--json" in getattr(p, "opts", ()) for p in getattr(command, "params", ())):
            found.append(path)

    walk(typer.main.get_command(app), [])
    return found


def test_every_json_option_is_a_plain_flag_in_help() -> None:
    commands = _commands_with_json()
    assert len(commands) >= 8  # processors, runs, run, configure, send, watch, data, ...
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        line = next(line for line in result.output.splitlines() if re.match(r"\W*--json", line))
        # "│ --json    Print machine-readable JSON." and no value such as <bool> or BOOLEAN
        assert re.search(r"--json\s+Print", line), (path, line)


def test_configure_prints_the_warnings_of_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = {
        "RunID": "r",
        "CurrentState": "CONFIGURED",
        "Configuration": {"ExpectedData": {"NumChunks": 0}},
        "Warnings": ["unknown field ExpectedData.NumChunk ignored", "MaxWorkers 99 lowered to 64"],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    monkeypatch.setattr(
        _common, "Client", functools.partial(Client, transport=httpx.MockTransport(handler))
    )
    for extra in ([], ["--json"]):
        result = runner.invoke(app, ["configure", "noop", "r", "--url", "http://stub", *extra])
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines() == [
            "warning: unknown field ExpectedData.NumChunk ignored",
            "warning: MaxWorkers 99 lowered to 64",
        ]
