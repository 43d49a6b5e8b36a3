"""`wiz executor`'s token and browser-defence options, and the refusal to listen off
loopback without a token. Nothing is bound: `run_server` is a stub that records what
it would serve (or fails the test if it is reached when it must not be)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wiz_executor import Settings
from wiz_executor.cli import _serve, app

runner = CliRunner()
TOKEN = "tok-123_abc"


@pytest.fixture(autouse=True)
def _no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIZ_TOKEN", raising=False)
    # Logging is the process's: configured for real, it would outlive the test.
    monkeypatch.setattr(_serve, "configure_logging", lambda level, fmt="text": None)


def served_with(
    monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        _serve, "create_app", lambda settings: seen.setdefault("settings", settings)
    )
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: seen.update(kw))
    result = runner.invoke(app, ["executor", *args], env=env)
    assert result.exit_code == 0, result.output
    return seen


def refused(monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """The command's output when it refuses to start; fails if it would serve."""
    monkeypatch.setattr(_serve, "run_server", lambda *a, **kw: pytest.fail("served anyway"))
    result = runner.invoke(app, ["executor", *args])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    "args",
    [
        ["--host", "0.0.0.0"],
        ["--port", "0.0.0.0:9000"],  # a host in --port counts
        ["--host", "127.0.0.1", "--port", "0.0.0.0:9000"],
        ["--host", "::"],
        ["--port", "[::]:9000"],
        ["--host", "192.168.1.20"],
        ["--host", "wiz.example.org"],  # a name may resolve to anything
    ],
)
def test_off_loopback_without_a_token_is_refused_before_binding(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    text = refused(monkeypatch, *args)
    assert "without a token" in text
    for hint in ("WIZ_TOKEN", "--token-file", "--insecure"):
        assert hint in text, hint


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--host", "localhost"],
        ["--port", "[::1]:9000"],
        ["--host", "127.0.0.2"],
        ["--port", ":0"],
    ],
)
def test_loopback_needs_no_token(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    assert served_with(monkeypatch, *args)["settings"].token is None


def test_insecure_insists(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = served_with(monkeypatch, "--host", "0.0.0.0", "--insecure")
    assert seen["host"] == "0.0.0.0"
    assert seen["settings"].token is None


def test_a_token_from_the_option_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = served_with(monkeypatch, "--host", "0.0.0.0", "--token", TOKEN)
    assert (seen["host"], seen["settings"].token) == ("0.0.0.0", TOKEN)
    seen = served_with(monkeypatch, "--port", "0.0.0.0:9000", env={"WIZ_TOKEN": TOKEN})
    assert (seen["host"], seen["port"], seen["settings"].token) == ("0.0.0.0", 9000, TOKEN)
    # and never in the settings' repr, which may be logged
    assert TOKEN not in repr(seen["settings"])


def test_a_token_file_is_read_and_stripped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    seen = served_with(monkeypatch, "--host", "0.0.0.0", "--token-file", str(path))
    assert seen["settings"].token == TOKEN


def test_bad_token_files_are_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    assert "is empty" in refused(monkeypatch, "--token-file", str(empty))
    missing = tmp_path / "missing"
    text = refused(monkeypatch, "--token-file", str(missing))
    assert "cannot read --token-file" in text
    assert "No such file" in text
    both = refused(monkeypatch, "--token", TOKEN, "--token-file", str(empty))
    assert "not both" in both


@pytest.mark.parametrize("bad", ["two words", "tok\u00e9n", "a=b"])
def test_a_token_a_header_cannot_carry_is_refused(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    assert "RFC 6750" in refused(monkeypatch, "--token", bad)


def test_browser_defence_options_become_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings: Settings = served_with(
        monkeypatch,
        "--allow-origin",
        "https://ui.example.org/",
        "--allow-origin",
        "http://localhost:3000",
        "--allow-host",
        "wiz.internal",
        "--metrics-public",
    )["settings"]
    assert settings.allowed_origins == ("https://ui.example.org", "http://localhost:3000")
    assert settings.allowed_hosts == ("wiz.internal",)
    assert settings.metrics_public is True
    defaults: Settings = served_with(monkeypatch)["settings"]
    assert (defaults.allowed_origins, defaults.allowed_hosts) == ((), ())
    assert defaults.metrics_public is False


def test_a_bad_origin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "--allow-origin" in refused(monkeypatch, "--allow-origin", "ui.example.org")


def test_the_name_bound_is_an_allowed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = served_with(monkeypatch, "--host", "wiz.example.org", "--token", TOKEN)["settings"]
    assert settings.allowed_hosts == ("wiz.example.org",)


def test_downstream_tokens_from_options_and_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tokens"
    path.write_text("# targets\n\nexec-b:8080=tok-b\nEXEC-C:9000 = tok-c==\n")
    settings: Settings = served_with(
        monkeypatch,
        "--downstream-token",
        "http://exec-d:80/=tok-d",
        "--downstream-token",
        "exec-b:8080=tok-b2",
        "--downstream-token-file",
        str(path),
    )["settings"]
    assert settings.downstream_tokens == {
        "exec-b:8080": "tok-b2",  # the option wins over the file
        "exec-c:9000": "tok-c==",
        "exec-d:80": "tok-d",
    }
    assert "tok-b2" not in repr(settings)


@pytest.mark.parametrize("line", ["no-equals", "=tok", "host:1=", "host:1=bad token"])
def test_bad_downstream_tokens_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, line: str
) -> None:
    assert "--downstream-token" in refused(monkeypatch, "--downstream-token", line)
    path = tmp_path / "tokens"
    path.write_text(f"ok:1=tok\n{line}\n")
    assert "line 2" in refused(monkeypatch, "--downstream-token-file", str(path))
