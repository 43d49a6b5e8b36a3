"""`wiz executor`'s configuration: every option from a flag, `WIZ_<NAME>` or a TOML file,
flag > environment > file > default, as `--print-config` shows (secrets masked)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from wiz_executor import Settings
from wiz_executor.cli import _config, _serve, app

runner = CliRunner()

SAMPLES: dict[str, str] = {
    # Options whose default is no value: a valid one to set them to. A new option with
    # no default needs a line here (test_every_option_is_settable_* says so).
    "allow-root": "/srv/a",
    "allow-net": "10.0.0.0/8",
    "deny-net": "192.168.0.0/16",
    "ssl-certfile": "cert.pem",
    "ssl-keyfile": "key.pem",
    "ssl-keyfile-password": "pass-word",
    "ssl-ca-certs": "ca.pem",
    "token": "s3cret-token",
    "token-file": "token.txt",
    "allow-origin": "https://example.org",
    "allow-host": "wiz.example.org",
    "downstream-token": "other:8080=down-token",
    "downstream-token-file": "tokens.txt",
    "db": "journal.db",
    "ray-address": "auto",
    "ray-num-cpus": "3",
}


@pytest.fixture(autouse=True)
def no_wiz_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process's own WIZ_* variables must not leak into the settings."""
    for name in list(os.environ):
        if name.startswith("WIZ_"):
            monkeypatch.delenv(name)


def executor_command() -> Any:
    command = typer.main.get_command(app)
    return command.commands["executor"]  # type: ignore[attr-defined]


def options() -> list[Any]:
    return _config.settable(executor_command())


def sample(param: Any) -> tuple[str, Any]:
    """A value for `param` different from its default, as an environment variable's text
    and as a TOML value."""
    key = _config.key_of(param)
    if key in SAMPLES:
        text = SAMPLES[key]
        value: Any = int(text) if text.isdigit() else text  # TOML: a number as a number
        return text, [value] if param.multiple else value
    default = param.default
    if isinstance(default, bool):
        return ("false", False) if default else ("true", True)
    if hasattr(default, "value"):  # an enum: another of its choices
        other = next(m.value for m in type(default) if m is not default)
        return other, other
    if isinstance(default, int | float):
        return str(default + 1), default + 1
    if isinstance(default, str | Path):
        text = f"{default}1" if not str(default).isdigit() else str(int(str(default)) + 1)
        return text, text
    pytest.fail(f"{key}: no sample value; add one to SAMPLES in tests/test_config.py")


def printed(args: list[str], env: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """`wiz executor --print-config` as {key: (value, source)} (unset ones: value '')."""
    result = runner.invoke(app, ["executor", *args, "--print-config"], env=env)
    assert result.exit_code == 0, result.output
    rows: dict[str, tuple[str, str]] = {}
    for line in result.output.splitlines():
        if line.startswith("# config file") or line.startswith("# wiz executor"):
            continue
        setting, _, source = line.rpartition("  # ")
        setting = setting.strip()
        if setting.startswith("# "):
            rows[setting[2:].split(" = ")[0]] = ("", source)
        else:
            key, _, value = setting.partition(" = ")
            rows[key] = (value, source)
    return rows


def test_every_option_is_listed_by_print_config() -> None:
    rows = printed([])
    assert set(rows) == {_config.key_of(p) for p in options()}
    assert len(rows) > 30  # the executor's options, not an empty command
    assert all(source == "default" for _, source in rows.values())


def test_print_config_is_toml_that_reads_back(tmp_path: Path) -> None:
    """What it prints can start a config file: the printed settings read back the same."""
    result = runner.invoke(app, ["executor", "--max-workers", "5", "--print-config"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "wiz.toml"
    path.write_text(result.output)
    assert tomllib.loads(result.output)["max-workers"] == 5
    again = printed(["--config", str(path)])
    assert again["max-workers"] == ("5", f"file {path}")
    assert again["host"] == ('"127.0.0.1"', f"file {path}")


@pytest.mark.parametrize("param", options(), ids=_config.key_of)
def test_every_option_is_settable_from_the_environment(param: Any) -> None:
    text, _ = sample(param)
    variable = _config.env_of(param)
    assert variable == "WIZ_" + _config.key_of(param).upper().replace("-", "_")
    key = _config.key_of(param)
    value, source = printed([], env={variable: text})[key]
    assert source == f"environment {variable}"
    if not _config.is_secret(param):
        assert text in value


@pytest.mark.parametrize("param", options(), ids=_config.key_of)
def test_every_option_is_settable_from_the_file(param: Any, tmp_path: Path) -> None:
    _, value = sample(param)
    key = _config.key_of(param)
    path = tmp_path / "wiz.toml"
    path.write_text(f"{key} = {_config.toml_value(value)}\n")
    shown, source = printed(["--config", str(path)])[key]
    assert source == f"file {path}"
    if not _config.is_secret(param):
        assert tomllib.loads(f"v = {shown}")["v"] == value


def test_precedence_flag_then_environment_then_file_then_default(tmp_path: Path) -> None:
    path = tmp_path / "wiz.toml"
    path.write_text("max-workers = 5\nmax-pending = 500\nrun-workers = 2\n")
    env = {"WIZ_CONFIG": str(path), "WIZ_MAX_WORKERS": "6", "WIZ_MAX_PENDING": "600"}
    rows = printed(["--max-workers", "7"], env=env)
    assert rows["max-workers"] == ("7", "flag --max-workers")
    assert rows["max-pending"] == ("600", "environment WIZ_MAX_PENDING")
    assert rows["run-workers"] == ("2", f"file {path}")
    assert rows["max-attempts"] == (str(Settings().max_attempts), "default")


def test_the_settings_served_follow_the_precedence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not only the printout: the executor is started with the winning values."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(_serve, "create_app", lambda s: seen.setdefault("settings", s))
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(_serve, "configure_logging", lambda *a, **kw: None)
    path = tmp_path / "wiz.toml"
    path.write_text(
        f'data-dir = "{tmp_path}"\nmax_workers = 5\nmax-pending = 500\nephemeral = true\n'
        'allow-net = ["10.0.0.0/8", "10.1.0.0/16"]\nport = 9100\n'
    )
    result = runner.invoke(
        app,
        ["executor", "--config", str(path), "--max-pending", "700"],
        env={"WIZ_MAX_WORKERS": "6", "WIZ_DENY_NET": "192.168.0.0/16 172.16.0.0/12"},
    )
    assert result.exit_code == 0, result.output
    settings: Settings = seen["settings"]
    assert (settings.max_workers, settings.max_pending) == (6, 700)
    assert settings.ephemeral is True
    assert settings.allow_net == ("10.0.0.0/8", "10.1.0.0/16")
    assert settings.deny_net == ("192.168.0.0/16", "172.16.0.0/12")
    assert seen["port"] == 9100


def test_unknown_key_names_it_and_the_closest_valid_key(tmp_path: Path) -> None:
    path = tmp_path / "wiz.toml"
    path.write_text("max-workers = 4\nmax-wokers = 8\n")
    result = runner.invoke(app, ["executor", "--config", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "unknown key 'max-wokers'" in result.output
    assert "did you mean 'max-workers'?" in result.output
    assert str(path) in result.output


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wiz.toml"
    path.write_text("max-workers = 4\nmax_workers = 8\n")
    result = runner.invoke(app, ["executor", "--config", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "'max-workers' is given twice" in result.output


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('max-workers = "many"', "max-workers"),
        ("max-workers = 0", "max-workers"),  # below the option's minimum
        ('allow-net = ["not-a-network"]', "allow-net"),  # refused by the option's callback
        ('port = "x:y:z"', "port"),  # refused by the command's own check
        ('keep-finished = "soon"', "keep-finished"),
        ("host = [1, 2]", "host"),  # an array for a single value
    ],
)
def test_a_bad_value_in_the_file_names_the_key_and_the_file(
    tmp_path: Path, line: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_serve, "run_server", lambda *a, **kw: pytest.fail("served anyway"))
    path = tmp_path / "wiz.toml"
    path.write_text(line + "\n")
    result = runner.invoke(app, ["executor", "--config", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert repr(key) in result.output
    assert str(path) in result.output


def test_a_bad_value_in_the_environment_names_the_variable() -> None:
    result = runner.invoke(
        app, ["executor", "--print-config"], env={"WIZ_MAX_WORKERS": "x", "COLUMNS": "300"}
    )
    assert result.exit_code == 2
    assert "Invalid value for WIZ_MAX_WORKERS" in result.output


def test_a_file_that_is_not_toml_or_missing_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "wiz.toml"
    path.write_text("max-workers = [\n")
    result = runner.invoke(app, ["executor", "--config", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "is not valid TOML" in result.output
    result = runner.invoke(
        app, ["executor", "--config", str(tmp_path / "none.toml")], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_secrets_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "wiz.toml"
    path.write_text('downstream-token = ["other:9000=file-secret"]\n')
    result = runner.invoke(
        app,
        [
            "executor",
            "--config",
            str(path),
            "--ssl-keyfile-password",
            "flag-secret",
            "--print-config",
        ],
        env={"WIZ_TOKEN": "env-secret"},
    )
    assert result.exit_code == 0, result.output
    for secret in ("file-secret", "flag-secret", "env-secret"):
        assert secret not in result.output
    lines = result.output.splitlines()
    # a comment, so that the output stays a config file that starts (see below)
    assert any(re.match(r"# token = \(set; masked\) +# environment WIZ_TOKEN$", x) for x in lines)
    assert any(re.match(r"# downstream-token = \(set; masked\) +# file ", x) for x in lines)
    assert any(re.match(r"# ssl-keyfile-password = \(set; masked\) +# flag ", x) for x in lines)
    rows = printed(["--config", str(path)], env={"WIZ_TOKEN": "env-secret"})
    assert rows["token-file"] == ("", "default")  # a path, not a secret: shown when set


def test_print_config_with_a_secret_set_reads_back(tmp_path: Path) -> None:
    """With a secret set, what `--print-config` prints is still a usable config file: the
    secret is a comment (it stays where it was set), not a masked value the executor
    would take as the secret itself and refuse to start with."""
    result = runner.invoke(
        app,
        ["executor", "--max-workers", "5", "--print-config"],
        env={"WIZ_TOKEN": "env-secret-1"},
    )
    assert result.exit_code == 0, result.output
    assert "env-secret-1" not in result.output
    data = tomllib.loads(result.output)
    assert "token" not in data
    assert data["max-workers"] == 5
    path = tmp_path / "wiz.toml"
    path.write_text(result.output)
    again = printed(["--config", str(path)], env={"WIZ_TOKEN": "env-secret-1"})
    assert again["max-workers"] == ("5", f"file {path}")
    assert again["token"] == ("", "environment WIZ_TOKEN")


def test_repeatable_options_split_on_whitespace_paths_on_the_path_separator() -> None:
    rows = printed(
        [],
        env={
            "WIZ_ALLOW_HOST": "a.example  b.example",
            "WIZ_ALLOW_ROOT": os.pathsep.join(["/srv/a", "/srv/b c"]),
        },
    )
    assert rows["allow-host"][0] == '["a.example", "b.example"]'
    assert rows["allow-root"][0] == '["/srv/a", "/srv/b c"]'


def test_a_single_value_of_a_repeatable_option_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wiz.toml"
    path.write_text('allow-host = "a.example"\n')
    assert printed(["--config", str(path)])["allow-host"][0] == '["a.example"]'


def test_switches_from_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "wiz.toml"
    path.write_text("fsync = true\ninsecure = true\n")
    rows = printed(["--config", str(path)], env={"WIZ_FSYNC": "0", "WIZ_METRICS_PUBLIC": "yes"})
    assert rows["fsync"] == ("false", "environment WIZ_FSYNC")
    assert rows["insecure"] == ("true", f"file {path}")
    assert rows["metrics-public"] == ("true", "environment WIZ_METRICS_PUBLIC")


def test_older_variable_names_keep_working() -> None:
    """`WIZ_CA_CERTS` (shared with the client verbs) is still read, besides the generated
    `WIZ_SSL_CA_CERTS`."""
    rows = printed([], env={"WIZ_CA_CERTS": "ca.pem"})
    assert rows["ssl-ca-certs"] == ('"ca.pem"', "environment WIZ_CA_CERTS")
    rows = printed([], env={"WIZ_SSL_CA_CERTS": "other.pem"})
    assert rows["ssl-ca-certs"] == ('"other.pem"', "environment WIZ_SSL_CA_CERTS")


def test_help_names_each_variable() -> None:
    result = runner.invoke(app, ["executor", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert "WIZ_MAX_WORKERS" in result.output
    assert "WIZ_CONFIG" in result.output


def test_an_option_added_later_is_covered_without_more_code(tmp_path: Path) -> None:
    """What makes the mechanism generic: a command with a new option (as `--ray-address`
    will be) gets its variable and its key from ConfiguredCommand alone."""
    demo = typer.Typer()
    seen: dict[str, Any] = {}

    @demo.command(cls=_config.ConfiguredCommand)
    def run(
        config: Annotated[
            Path | None,
            typer.Option(envvar="WIZ_CONFIG", is_eager=True, callback=_config.load_config),
        ] = None,
        print_config: Annotated[bool, typer.Option("--print-config")] = False,
        ray_address: str = "auto",
        ray_num_cpus: int = 0,
    ) -> None:
        seen.update(ray_address=ray_address, ray_num_cpus=ray_num_cpus)

    path = tmp_path / "wiz.toml"
    path.write_text("ray-num-cpus = 4\n")
    env = {"WIZ_RAY_ADDRESS": "127.0.0.1:6379"}
    result = runner.invoke(demo, ["--config", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert seen == {"ray_address": "127.0.0.1:6379", "ray_num_cpus": 4}
    path.write_text("ray-adress = 'x'\n")
    result = runner.invoke(demo, ["--config", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "did you mean 'ray-address'?" in result.output
