"""deploy/: the systemd unit, the Dockerfile, the example config and the Grafana
dashboard, checked against the code they configure (no container engine or systemd
runs here: their files are parsed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from test_config import executor_command
from test_metrics_more import run_some_chunks, sample_names, scrape_families
from wiz_executor import Settings
from wiz_executor.cli import _config, _serve, app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
runner = CliRunner()


def unit_file() -> dict[str, dict[str, list[str]]]:
    """The unit's sections and their settings, as systemd reads them (a key may repeat;
    `#` and `;` start comments)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in (DEPLOY / "wiz-executor.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"a setting outside a section: {line}"
        key, equals, value = line.partition("=")
        assert equals, f"not KEY=VALUE: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def executor_variables() -> set[str]:
    names = {_config.CONFIG_ENV}
    for param in _config.settable(executor_command()):
        names.update([param.envvar] if isinstance(param.envvar, str) else param.envvar)
    return names


def test_the_unit_runs_the_executor_as_a_hardened_service() -> None:
    unit = unit_file()
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["User"] not in ("", "root", "0")
    assert service["StateDirectory"] == "wiz"
    program, *args = service["ExecStart"].split()
    assert (Path(program).name, args) == ("wiz", ["executor"])
    assert "EnvironmentFile" in service
    for setting, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
    }.items():
        assert service.get(setting) == value, setting
    assert service["CapabilityBoundingSet"] == ""  # no capability at all
    assert service["RestartPreventExitStatus"] == "2"  # a usage error does not loop
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_waits_longer_than_the_shutdown_grace() -> None:
    """systemd kills what is still running after TimeoutStopSec: that must come after
    the executor's own graceful stop (grace, then uvicorn's second)."""
    service = unit_file()["Service"]
    grace = Settings().shutdown_grace
    assert float(service["TimeoutStopSec"][-1]) > grace + 1


def test_the_unit_sets_only_variables_the_executor_reads() -> None:
    service = unit_file()["Service"]
    names = {value.partition("=")[0] for value in service["Environment"]}
    assert names
    assert names <= executor_variables(), names - executor_variables()


def test_the_unit_leaves_the_config_file_s_settings_to_it() -> None:
    """The unit sets no variable for a setting of the config file (a variable wins over
    the file, so the file's would be silently ignored): the data dir is set in the file
    only, and lies inside the unit's one writable directory."""
    service = unit_file()["Service"]
    names = {value.partition("=")[0] for value in service["Environment"]}
    example = tomllib.loads((DEPLOY / "config.example.toml").read_text())
    by_key = {_config.key_of(p): _config.env_of(p) for p in _config.settable(executor_command())}
    assert not names & {by_key[key] for key in example}, names
    state = "/var/lib/" + service["StateDirectory"][-1]
    assert example["data-dir"].startswith(state + "/")


def test_the_unit_s_print_config_command_reads_what_the_unit_reads() -> None:
    """The header's `--print-config` command has the unit's variables (WIZ_CONFIG and the
    environment file), and reads the file in a shell rather than onto a command line
    (`env $(cat …)` showed WIZ_TOKEN to `ps`)."""
    text = (DEPLOY / "wiz-executor.service").read_text()
    header = " ".join(
        line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")
    )
    assert "$(cat" not in header
    command = header[: header.index("--print-config")]
    command = command[command.rindex("sudo") :]
    service = unit_file()["Service"]
    env_file = service["EnvironmentFile"][-1].lstrip("-")
    assert f"set -a; . {env_file}; set +a;" in command
    for value in service["Environment"]:
        assert value in command, value
    assert f"cd {service['WorkingDirectory'][-1]} && sudo" in header


def test_the_example_config_is_valid() -> None:
    path = DEPLOY / "config.example.toml"
    keys = tomllib.loads(path.read_text())
    assert len(keys) > 10
    result = runner.invoke(app, ["executor", "--config", str(path), "--print-config"])
    assert result.exit_code == 0, result.output
    from_file = [line for line in result.output.splitlines() if line.endswith(f"# file {path}")]
    assert len(from_file) == len(keys)


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, rest = line.strip().partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def _normal(command: str, venv: str) -> list[str]:
    """An install command with the parts that may differ taken out: where the virtual
    environment is, `--quiet`, and the editable development install's `-e` and
    `[dev]` (the image installs the package itself)."""
    words = shlex.split(command.replace(venv, "VENV"))
    words = [w for w in words if w not in ("--quiet", "-e")]
    return ["." if w == ".[dev]" else w for w in words]


def test_the_dockerfile_installs_as_the_project_does() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None, "the Makefile's install recipe moved: update this test"
    steps = [
        line.strip().replace("$(PYTHON)", "python3").replace("$(BIN)", "$(VENV)/bin")
        for line in recipe.group(1).splitlines()
        if not line.strip().startswith("touch")
    ]
    project = [_normal(step, "$(VENV)") for step in steps]
    [run] = [args for kind, args in dockerfile() if kind == "RUN" and " venv " in args]
    image = [_normal(step, "/opt/wiz") for step in run.split("&&")]
    assert image == project


def test_the_image_runs_unprivileged_and_needs_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It listens on 0.0.0.0 inside the container: with its environment and no token,
    the executor refuses to start; with WIZ_TOKEN it serves there."""
    instructions = dockerfile()
    users = [args for kind, args in instructions if kind == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    [entry] = [args for kind, args in instructions if kind == "ENTRYPOINT"]
    assert json.loads(entry) == ["wiz", "executor"]
    env: dict[str, str] = {}
    for kind, args in instructions:
        if kind == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    wiz = {k: v for k, v in env.items() if k.startswith("WIZ_")}
    assert wiz["WIZ_HOST"] == "0.0.0.0"
    assert "WIZ_TOKEN" not in wiz  # given when the container is run, never baked in
    # Nor the data dir: a variable would win over a mounted config file's data-dir.
    assert "WIZ_DATA_DIR" not in wiz
    assert "--insecure" not in (DEPLOY / "Dockerfile").read_text()
    assert set(wiz) <= executor_variables()

    for name in [n for n in os.environ if n.startswith("WIZ_")]:
        monkeypatch.delenv(name)  # the test process's own must not count
    monkeypatch.setattr(_serve, "create_app", lambda settings: settings)
    served: dict[str, Any] = {}
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: served.update(kw))
    monkeypatch.setattr(_serve, "configure_logging", lambda *a, **kw: None)
    monkeypatch.setattr(_serve, "check_journal", lambda settings: None)
    refused = runner.invoke(app, ["executor"], env={**wiz, "WIZ_DATA_DIR": "wiz-data-unused"})
    assert refused.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without a token" in refused.output
    assert not served
    env_with_token = {**wiz, "WIZ_DATA_DIR": "wiz-data-unused", "WIZ_TOKEN": "a-token"}
    result = runner.invoke(app, ["executor"], env=env_with_token)
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("0.0.0.0", int(wiz["WIZ_PORT"]))


async def test_every_metric_the_grafana_dashboard_queries_is_scraped(
    client: httpx.AsyncClient,
) -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(queries) > 15
    await run_some_chunks(client, "grafana", 3, failed=1)
    scraped = sample_names(await scrape_families(client))
    used = {name for q in queries for name in re.findall(r"\b(?:wiz|process)_[a-z0-9_]+", q)}
    assert len(used) > 15
    assert used <= scraped, used - scraped
