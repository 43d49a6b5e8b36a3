"""`wiz executor`: a thin command over `Settings` and `create_app`, served by uvicorn."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from _wiz_process import WizProcess
from conftest import wait_for
from wiz_executor import Settings, WorkModel
from wiz_executor.cli import _serve, app

runner = CliRunner()


def test_wiz_help_lists_the_executor_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "executor" in result.output


def test_executor_help_lists_its_options() -> None:
    result = runner.invoke(app, ["executor", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in (
        "--host",
        "--port",
        "--max-workers",
        "--run-workers",
        "--max-pending",
        "--work-model",
        "--chunk-timeout",
        "--shutdown-grace",
        "--data-dir",
        "--max-body-bytes",
    ):
        assert option in result.output, option


def test_options_become_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The command only translates options; nothing is served in this test."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        _serve, "create_app", lambda settings: seen.setdefault("settings", settings)
    )
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: seen.update(app=app, **kw))
    # Logging is the process's: configured for real, it would outlive this test.
    monkeypatch.setattr(
        _serve, "configure_logging", lambda level, fmt="text": seen.update(logs=level)
    )
    result = runner.invoke(
        app,
        [
            "executor",
            "--port",
            "9999",
            "--max-workers",
            "7",
            "--run-workers",
            "3",
            "--max-pending",
            "50",
            "--work-model",
            "pool",
            "--chunk-timeout",
            "2.5",
            "--shutdown-grace",
            "4",
            "--data-dir",
            str(tmp_path),
            "--max-body-bytes",
            "1000",
            "--log-level",
            "warning",
        ],
    )
    assert result.exit_code == 0, result.output
    settings: Settings = seen["settings"]
    assert (settings.max_workers, settings.default_run_workers, settings.max_pending) == (7, 3, 50)
    assert settings.work_model is WorkModel.POOL
    assert settings.chunk_timeout == 2.5
    assert settings.shutdown_grace == 4
    assert settings.data_dir == tmp_path
    assert settings.max_body_bytes == 1000
    assert seen["app"] is settings
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 9999)
    assert seen["logs"] == "warning"
    assert seen["log_config"] is None  # uvicorn keeps the one format configure_logging set


def served_with(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """What `wiz executor ARGS` would serve: the settings, host and port (nothing runs)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        _serve, "create_app", lambda settings: seen.setdefault("settings", settings)
    )
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: seen.update(kw))
    result = runner.invoke(app, ["executor", *args])
    assert result.exit_code == 0, result.output
    return seen


@pytest.mark.parametrize(
    ("args", "host", "port"),
    [
        (["--port", "9000"], "127.0.0.1", 9000),
        # How the original manager starts it: Go's listen-address form, on loopback here.
        (["--port", ":8080"], "127.0.0.1", 8080),
        (["--host", "127.0.0.2", "--port", ":8080"], "127.0.0.2", 8080),
        (["--port", "0.0.0.0:9001", "--insecure"], "0.0.0.0", 9001),  # no token: insist
        (["--host", "127.0.0.2", "--port", "localhost:9002"], "localhost", 9002),
        (["--port", "[::1]:9003"], "::1", 9003),
        (["--port", "0"], "127.0.0.1", 0),  # a free port, picked by the system
        (["--port", ":0"], "127.0.0.1", 0),
        ([], "127.0.0.1", 8080),
    ],
)
def test_port_takes_go_listen_address_forms(
    monkeypatch: pytest.MonkeyPatch, args: list[str], host: str, port: int
) -> None:
    seen = served_with(monkeypatch, *args)
    assert (seen["host"], seen["port"]) == (host, port)


@pytest.mark.parametrize(
    "value",
    ["", ":", "abc", ":abc", "65536", ":70000", "::1:80", "[::1]", "[::1]80", "-1"],
)
def test_bad_port_values_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setattr(_serve, "run_server", lambda *a, **kw: pytest.fail("served anyway"))
    result = runner.invoke(app, ["executor", "--port", value])
    assert result.exit_code == 2, result.output
    assert "--port" in result.output


def test_help_says_how_port_and_host_combine() -> None:
    result = runner.invoke(app, ["executor", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.replace("│", " ").split())  # rich's panel, unwrapped
    assert ":PORT" in text
    assert "wins over --host" in text
    assert "loopback" in text
    assert "--strict-config" in text


def test_strict_config_becomes_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert served_with(monkeypatch)["settings"].strict_config is False
    assert served_with(monkeypatch, "--strict-config")["settings"].strict_config is True


@pytest.mark.parametrize("bad", [["--max-workers", "0"], ["--work-model", "fork"]])
def test_bad_options_are_refused(bad: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_serve, "run_server", lambda *a, **kw: pytest.fail("served anyway"))
    result = runner.invoke(app, ["executor", *bad])
    assert result.exit_code == 2


def test_python_dash_m_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wiz_executor", "executor", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--max-workers" in result.stdout


async def test_wiz_executor_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    wiz = WizProcess(tmp_path, "--shutdown-grace", "1", log_level="warning")
    try:
        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url) as http:
            config = {"ExpectedData": {"NumChunks": 1}}
            assert (await http.post("/processors/noop/runs/r/config", json=config)).is_success
            resp = await http.post("/processors/noop/runs/r/data", json={"ChunkID": "c"})
            assert resp.json() == {"Accepted": 1, "Duplicates": 0}

            async def done() -> bool:
                run = (await http.get("/processors/noop/runs/r")).json()
                return bool(run["CurrentState"] == "SUCCEEDED")

            await wait_for(done)
        assert await wiz.kill(signal.SIGINT, timeout=20) == 0, wiz.stderr()
    finally:
        await wiz.stop()


def test_delivery_options_become_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = served_with(monkeypatch)["settings"]
    assert (defaults.delivery_timeout, defaults.delivery_backoff_cap) == (3600.0, 30.0)
    assert defaults.downstream_attempts is None  # the window bounds a delivery, not a count
    settings = served_with(
        monkeypatch,
        "--delivery-timeout",
        "90",
        "--delivery-backoff-cap",
        "5",
        "--downstream-backoff",
        "0.5",
    )["settings"]
    assert settings.delivery_timeout == 90
    assert settings.delivery_backoff_cap == 5
    assert settings.downstream_backoff == 0.5


def test_a_zero_delivery_timeout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_serve, "run_server", lambda *a, **kw: pytest.fail("served anyway"))
    result = runner.invoke(app, ["executor", "--delivery-timeout", "0"])
    assert result.exit_code == 2, result.output


def test_ceiling_flags_fill_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = served_with(
        monkeypatch,
        "--max-download-bytes",
        "5000",
        "--max-page-bytes",
        "600",
        "--max-scrape-parallelism",
        "2",
        "--max-ls-entries",
        "70",
        "--max-chunk-timeout",
        "90",
    )
    settings: Settings = seen["settings"]
    assert settings.limits().max_download_bytes == 5000
    assert (settings.max_page_bytes, settings.max_scrape_parallelism) == (600, 2)
    assert settings.max_ls_entries == 70
    assert (settings.max_chunk_timeout, settings.default_chunk_timeout) == (90, 90)
    # The defaults are finite; --max-chunk-timeout 0 is the operator lifting that one.
    defaults: Settings = served_with(monkeypatch)["settings"]
    assert defaults.default_chunk_timeout == 3600
    assert defaults.max_download_bytes == 1 << 30
    lifted: Settings = served_with(monkeypatch, "--max-chunk-timeout", "0")["settings"]
    assert lifted.max_chunk_timeout is None


def test_a_chunk_timeout_above_its_ceiling_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_serve, "run_server", lambda *a, **kw: pytest.fail("served anyway"))
    args = ["executor", "--chunk-timeout", "100", "--max-chunk-timeout", "10"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "may not be above --max-chunk-timeout (10)" in " ".join(result.output.split())
