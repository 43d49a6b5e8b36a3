"""The executor's log: one format for every logger, lifecycle lines with run and chunk
IDs at INFO, nothing per outbound request at INFO, one line per record whatever an ID
holds."""

from __future__ import annotations

import logging
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from _stub_server import FlakyDownstream, closed_port, serve_asgi
from _wiz_process import WizProcess
from conftest import wait_run_done
from wiz_executor import Executor, Settings
from wiz_executor._logs import LogFormatter, escape

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S"
)
"""A record's first line, e.g. `2026-11-28 04:50:00.123 INFO wiz_executor.runs: run ...`."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """conftest's, with a short delivery window: a delivery to a dead host gives up (and
    is logged) in half a second, not the default hour."""
    return Settings(
        data_dir=tmp_path / "wiz-data",
        downstream_backoff=0.01,
        shutdown_grace=5,
        delivery_timeout=0.5,
    )


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(
        "wiz_executor.runs", logging.INFO, __file__, 1, message, args, exc_info
    )


def test_the_format() -> None:
    line = LogFormatter().format(record("run %s/%s finished", "noop", "r1"))
    assert LINE.match(line), line
    assert line.endswith(" INFO wiz_executor.runs: run noop/r1 finished")


def test_control_characters_in_a_message_are_escaped() -> None:
    line = LogFormatter().format(record("chunk %s failed: %s", "a\nb\r\x1b[31m", "x\ty\x00"))
    assert "\n" not in line
    assert line.endswith(r"chunk a\nb\r\x1b[31m failed: x\ty\x00")
    assert escape("line\u2028sep\x7f") == r"line\u2028sep\x7f"
    assert escape("plain ü ✓") == "plain ü ✓"


def test_a_traceback_keeps_its_lines() -> None:
    """The escaping is of the message: a traceback is the format's own multi-line part."""
    text = LogFormatter().format(record("chunk %s failed", "a\nb", exc=True))
    first, *rest = text.splitlines()
    assert first.endswith(r"chunk a\nb failed")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"


async def test_lifecycle_lines_name_runs_and_chunks(
    client: httpx.AsyncClient, executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serve_asgi(FlakyDownstream([])) as good:
        downstream = [
            {"Hostname": good, "ProcID": "noop", "RunID": "next"},
            {"Hostname": closed_port(), "ProcID": "noop", "RunID": "gone"},
        ]
        config = {
            "ExpectedData": {"NumChunks": 2},
            "ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": downstream},
        }
        assert (await client.post("/processors/noop/runs/r1/config", json=config)).is_success
        batch = [{"ChunkID": "ok"}, {"ChunkID": "bad", "RawData": {"Fail": True}}]
        assert (await client.post("/processors/noop/runs/r1/data", json=batch)).is_success
        await wait_run_done(client, "noop", "r1")
    messages = [(r.levelno, r.name, r.getMessage()) for r in caplog.records]
    info = [m for level, _, m in messages if level == logging.INFO]
    warnings = [m for level, _, m in messages if level == logging.WARNING]
    assert any(m.startswith("run noop/r1 configured") for m in info), info
    assert any(m.startswith("run noop/r1 started") for m in info), info
    finished = [m for m in info if m.startswith("run noop/r1 finished")]
    assert len(finished) == 1, info
    assert "ERRORED" in finished[0]
    assert "2 chunks, 1 failed" in finished[0]
    assert "1 not delivered" in finished[0]
    assert re.search(r" in \d+\.\d+ s", finished[0]), finished[0]
    [failed] = [m for m in warnings if m.startswith("chunk bad of run noop/r1 failed")]
    assert "noop was asked to fail" in failed
    [undelivered] = [m for m in warnings if "not delivered" in m]
    assert "output ok-out of run noop/r1" in undelivered
    assert "gone" in undelivered
    # Success is not logged per chunk, and outbound requests are not logged at INFO
    # by the executor itself.
    assert not any("chunk ok " in m for m in info), info


async def test_a_deleted_runs_chunks_are_one_line_not_one_each(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = {"ExpectedData": {"NumChunks": 0}, "Processor": {"SleepMs": 60_000}}
    assert (await client.post("/processors/noop/runs/d/config", json=config)).is_success
    batch = [{"ChunkID": f"c{i}"} for i in range(20)]
    assert (await client.post("/processors/noop/runs/d/data", json=batch)).is_success
    assert (await client.delete("/processors/noop/runs/d")).is_success
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("chunk ") for m in messages), messages
    [deleted] = [m for m in messages if m.startswith("run noop/d deleted")]
    assert "20 unfinished chunks" in deleted


async def test_wiz_executor_logs_in_one_format(tmp_path: Path) -> None:
    """`wiz executor` as shipped, at the default level: uvicorn's lines and the
    executor's share the format, a downstream delivery logs no httpx line, and a chunk ID
    holding a newline stays on its record's line."""
    wiz = WizProcess(tmp_path, "--shutdown-grace", "1", log_level=None)
    try:
        await wiz.start()
        port = wiz.port  # (the sink is this executor)
        async with httpx.AsyncClient(base_url=wiz.url) as http:
            here = {"Hostname": f"127.0.0.1:{port}", "ProcID": "noop", "RunID": "sink"}
            source = {
                "ExpectedData": {"NumChunks": 2},
                "ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": [here]},
            }
            assert (await http.post("/processors/noop/runs/sink/config", json={})).is_success
            assert (await http.post("/processors/noop/runs/src/config", json=source)).is_success
            batch = [{"ChunkID": "ok"}, {"ChunkID": "bad\nline", "RawData": {"Fail": True}}]
            assert (await http.post("/processors/noop/runs/src/data", json=batch)).is_success
            await wait_run_done(http, "noop", "src", timeout=20)
            sink = (await http.get("/processors/noop/runs/sink")).json()
            assert sum(sink["ChunkCounts"].values()) == 1  # the delivery happened
        assert await wiz.kill(signal.SIGINT, timeout=20) == 0, wiz.stderr()
    finally:
        await wiz.stop()
    err = wiz.stderr()
    lines = err.splitlines()
    assert lines, "nothing logged"
    for line in lines:
        assert LINE.match(line), line
    text = "\n".join(lines)
    assert " INFO uvicorn.error: " in text  # uvicorn's own lines, in the same format
    assert " INFO wiz_executor.server: executor started on http://127.0.0.1:" in text
    assert "run noop/src configured" in text
    assert "run noop/src started" in text
    assert re.search(r"WARNING wiz_executor\.runs: chunk bad\\nline of run noop/src failed", text)
    assert re.search(r"INFO wiz_executor\.runs: run noop/src finished ERRORED", text)
    assert "executor stopping" in text
    assert "executor stopped" in text
    assert "httpx" not in text  # the delivery to the sink logged nothing per request
    assert "HTTP Request" not in text


def test_pipeline_run_keeps_the_run_log_out_of_its_live_display(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`wiz pipeline run` shows failed chunks itself; its embedded executor's WARNING per
    failed chunk would be written over the live display."""
    from typer.testing import CliRunner

    from wiz_executor.cli import app

    caplog.set_level(logging.INFO)
    spec = tmp_path / "failing.yaml"
    spec.write_text(
        "name: failing\n"
        "data: [{a: 1}, {a: 2}]\n"
        "spec:\n"
        "  sequential:\n"
        "    - name: only\n"
        "      processor: {id: noop, configuration: {Fail: true}}\n"
    )
    result = CliRunner().invoke(app, ["pipeline", "run", str(spec), "--data-dir", str(tmp_path)])
    assert result.exit_code == 3, result.output
    runs = [r for r in caplog.records if r.name == "wiz_executor.runs"]
    assert not [r for r in runs if r.levelno >= logging.WARNING], [r.getMessage() for r in runs]
    assert logging.getLogger("wiz_executor.runs").level == logging.NOTSET  # restored
