"""`--log-format json`: one JSON object per line (time, level, logger, message, and
processor, run, chunk when the record concerns one)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import Gate, asgi_client, gate_processor, run_path
from _stub_server import closed_port
from _wiz_process import WizProcess
from conftest import wait_for, wait_run_done
from wiz_executor import Executor, Settings
from wiz_executor._logs import JsonFormatter, about


def record(message: str, *args: object, extra: dict[str, str] | None = None) -> logging.LogRecord:
    rec = logging.LogRecord("wiz_executor.runs", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra or {})
    return rec


def test_a_record_is_one_json_object() -> None:
    line = JsonFormatter().format(record("run %s/%s finished", "noop", "r1"))
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "wiz_executor.runs"
    assert entry["message"] == "run noop/r1 finished"
    assert datetime.fromisoformat(entry["time"]).utcoffset() is not None  # zoned (UTC)


def test_the_run_and_chunk_a_record_concerns() -> None:
    line = JsonFormatter().format(record("chunk failed", extra=about("noop", "r1", "c7")))
    entry = json.loads(line)
    assert (entry["processor"], entry["run"], entry["chunk"]) == ("noop", "r1", "c7")
    entry = json.loads(JsonFormatter().format(record("run done", extra=about("noop", "r1"))))
    assert (entry["processor"], entry["run"]) == ("noop", "r1")
    assert "chunk" not in entry


def test_a_record_stays_one_line_whatever_it_holds() -> None:
    """A chunk ID may hold newlines, escapes and Unicode line separators: JSON escapes
    them all (ASCII only), so no line splitter, `str.splitlines` included, cuts it."""
    nasty = "a\nb\r\x1b[31m\u2028\u2029\x85"
    line = JsonFormatter().format(record("chunk %s failed", nasty, extra=about("p", nasty)))
    assert line.splitlines() == [line]
    entry = json.loads(line)
    assert entry["message"] == f"chunk {nasty} failed"
    assert entry["run"] == nasty


def test_a_traceback_is_a_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord(
            "wiz_executor", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(rec)
    assert line.splitlines() == [line]
    entry = json.loads(line)
    assert entry["message"] == "failed"
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: boom" in entry["exception"]


async def test_wiz_executor_logs_json_lines(tmp_path: Path) -> None:
    """`wiz executor --log-format json` as shipped: every stderr line is a JSON object,
    uvicorn's included, and the run log's records name their run and chunk."""
    wiz = WizProcess(tmp_path, "--shutdown-grace", "1", "--log-format", "json", log_level=None)
    try:
        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url) as http:
            config = {"ExpectedData": {"NumChunks": 2}}
            assert (await http.post("/processors/noop/runs/j1/config", json=config)).is_success
            batch = [{"ChunkID": "ok"}, {"ChunkID": "bad\nline", "RawData": {"Fail": True}}]
            assert (await http.post("/processors/noop/runs/j1/data", json=batch)).is_success
            await wait_run_done(http, "noop", "j1", timeout=20)
        assert await wiz.kill(signal.SIGINT, timeout=20) == 0, wiz.stderr()
    finally:
        await wiz.stop()
    err = wiz.stderr()
    entries: list[dict[str, Any]] = [json.loads(line) for line in err.splitlines()]
    assert entries, "nothing logged"
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    loggers = {e["logger"] for e in entries}
    assert "uvicorn.error" in loggers  # uvicorn's own lines, in the same format
    runs = [e for e in entries if e["logger"] == "wiz_executor.runs"]
    configured = next(e for e in runs if e["message"].startswith("run noop/j1 configured"))
    assert (configured["processor"], configured["run"]) == ("noop", "j1")
    assert "chunk" not in configured
    failed = next(e for e in runs if e["message"].startswith("chunk bad\nline of run"))
    assert failed["level"] == "WARNING"
    assert (failed["processor"], failed["run"], failed["chunk"]) == ("noop", "j1", "bad\nline")
    finished = next(e for e in runs if e["message"].startswith("run noop/j1 finished"))
    assert finished["run"] == "j1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """conftest's, with a short delivery window: a delivery to a dead host gives up (and
    is logged) in half a second, not the default hour."""
    return Settings(
        data_dir=tmp_path / "wiz-data",
        db_path=tmp_path / "wiz.db",
        downstream_backoff=0.01,
        shutdown_grace=5,
        delivery_timeout=0.5,
        allow_net=("127.0.0.1/32",),
    )


async def test_each_run_record_names_its_run_and_chunk(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The records about a run carry it (and the chunk, when about one) as attributes,
    which the JSON format writes as fields: the lifecycle lines, a failed chunk, and an
    output whose delivery downstream failed."""
    caplog.set_level(logging.INFO)
    downstream = [{"Hostname": closed_port(), "ProcID": "noop", "RunID": "gone"}]
    config = {
        "ExpectedData": {"NumChunks": 2},
        "ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": downstream},
    }
    assert (await client.post("/processors/noop/runs/r1/config", json=config)).is_success
    batch = [{"ChunkID": "ok"}, {"ChunkID": "bad", "RawData": {"Fail": True}}]
    assert (await client.post("/processors/noop/runs/r1/data", json=batch)).is_success
    await wait_run_done(client, "noop", "r1")
    about_run = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if "noop/r1" in r.getMessage()
    ]
    assert len(about_run) >= 5  # configured, started, a failure, a delivery, finished
    for entry in about_run:
        assert (entry["processor"], entry["run"]) == ("noop", "r1"), entry
    failed = next(e for e in about_run if "chunk bad of run" in e["message"])
    assert failed["chunk"] == "bad"
    undelivered = next(e for e in about_run if e["message"].startswith("output ok-out"))
    assert undelivered["chunk"] == "ok"


async def test_warnings_cancel_and_retry_name_their_run(
    executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    """Configure's warnings, AddData's unknown-field warning, "cancelled" and
    "retried" are about a run: their JSON lines carry `processor` and `run` too."""
    caplog.set_level(logging.INFO)
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        config = {"ExecutorConfig": {"MaxWorkers": 1, "Surprise": 1}}
        assert (await client.post(run_path("gate", "w1") + "/config", json=config)).is_success
        batch = [{"ChunkID": c, "Odd": 1} for c in "abc"]
        assert (await client.post(run_path("gate", "w1") + "/data", json=batch)).is_success
        await wait_for(lambda: gate.active == 1, what="chunk a to run")
        assert (await client.post(run_path("gate", "w1") + "/cancel")).json()["Cancelled"] == 2
        gate.release_all()
        await wait_run_done(client, "gate", "w1")
        assert (await client.post(run_path("gate", "w1") + "/retry")).json()["Chunks"] == 2
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if "gate/w1" in r.getMessage()
    ]
    for words in ("configured: unknown field", "AddData to run", "cancelled", "retried"):
        entry = next((e for e in lines if words in e["message"]), None)
        assert entry is not None, (words, lines)
        assert (entry.get("processor"), entry.get("run")) == ("gate", "w1"), entry
