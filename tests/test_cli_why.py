"""`wiz why PROC RUN` and `Client.why` / `AsyncClient.why`, against a live executor on
its own thread (the CLI blocks), with a run whose one worker is busy for a long while."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from wiz_executor import Settings
from wiz_executor.api import Data, Run
from wiz_executor.cli import app
from wiz_executor.cli._why import render_why
from wiz_executor.client import AsyncClient, Client, RunWhy
from wiz_executor.pipelines import EmbeddedExecutor

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("wiz-data"), shutdown_grace=5, max_pending=100
    )
    with EmbeddedExecutor(settings) as ex:
        yield ex.url


@pytest.fixture
def busy_run(url: str) -> Iterator[str]:
    """Run `busy` of noop: one worker, its chunk sleeping a minute, two chunks behind it."""
    with Client(url) as wiz:
        wiz.configure(
            "noop",
            "busy",
            {"ExecutorConfig": {"MaxWorkers": 1}, "Processor": {"SleepMs": 60_000}},
        )
        wiz.add_data("noop", "busy", [{"ChunkID": f"c{i}"} for i in range(3)])
        for _ in range(2000):  # until a worker has taken the first chunk
            if wiz.run("noop", "busy").ChunkCounts.RUNNING == 1:  # type: ignore[union-attr]
                break
        yield "busy"
        wiz.delete("noop", "busy")


def wiz_cli(url: str, *args: str) -> Result:
    result = CliRunner().invoke(app, [*args, "--url", url])
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result


def test_wiz_why_says_the_reason_the_room_and_the_running_chunk(url: str, busy_run: str) -> None:
    out = wiz_cli(url, "why", "noop", busy_run).stdout
    assert "RUN_LIMIT: 1 of MaxWorkers 1 busy" in out
    assert "free room" in out
    assert "98 more chunks accepted now" in out  # --max-pending 100, 2 waiting
    assert re.search(r"^running +c0  for [0-9.]+ s", out, re.MULTILINE), out
    assert "SLOW" not in out  # (no ChunkTimeout: never slow)


def test_wiz_why_json_is_the_run_and_its_running_chunks(url: str, busy_run: str) -> None:
    found: dict[str, Any] = json.loads(wiz_cli(url, "why", "noop", busy_run, "--json").stdout)
    assert found["Run"]["Waiting"]["Reason"] == "RUN_LIMIT"
    assert found["Run"]["FreeRoom"] == 98
    (running,) = found["Running"]
    assert running["ChunkID"] == "c0"
    assert running["State"] == "RUNNING"
    assert running["RunningSince"]


async def test_the_async_client_asks_the_same(url: str, busy_run: str) -> None:
    async with AsyncClient(url) as wiz:
        found = await wiz.why("noop", busy_run)
    assert found.run.Waiting is not None
    assert found.run.Waiting.Detail == "1 of MaxWorkers 1 busy"
    assert [c.ChunkID for c in found.running] == ["c0"]


def test_a_slow_chunk_and_a_run_with_nothing_waiting_are_drawn_so() -> None:
    now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    started = (now - timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
    run = Run.model_validate(
        {
            "RunID": "r",
            "Configuration": {},
            "CurrentState": "RUNNING",
            "ChunkCounts": {"WAITING": 0, "RUNNING": 1, "SUCCEEDED": 0, "FAILED": 0},
            "FreeRoom": 7,
        }
    )
    chunk = Data.model_validate(
        {
            "ChunkID": "c9",
            "State": "RUNNING",
            "RunningSince": started,
            "Slow": True,
            "Progress": {"Done": 3, "Total": 10},
        }
    )
    console = Console(file=StringIO(), width=200)
    console.print(render_why("noop", RunWhy(run, [chunk]), now))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "nothing waits" in out
    assert "7 more chunks accepted now" in out
    assert "c9  for 1.5 min  progress 3/10  SLOW (past half its ChunkTimeout)" in out
