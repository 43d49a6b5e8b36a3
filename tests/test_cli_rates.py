"""`wiz runs` and `wiz run` show throughput, ETA and times: from the Run's extension
fields (`ChunksPerSecond`, `EtaSeconds`, `Started`, `Ended`, `DurationSeconds`) when the
executor sends them, and an en dash when it does not (an older executor, the Go original).

The rendering tests feed crafted runs through an `httpx.MockTransport` (the CLI builds
its client itself, so the test hands it one with the mock transport); a real executor
checks that the columns are there whatever it sends.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from wiz_executor import Settings
from wiz_executor.api import Run, State
from wiz_executor.cli import _common, app
from wiz_executor.cli._progress import (
    NOT_KNOWN,
    RunTracker,
    duration_text,
    eta_text,
    rate_text,
    speed_text,
)
from wiz_executor.client import Client
from wiz_executor.pipelines import EmbeddedExecutor

WIDE = {"COLUMNS": "200", "WIZ_URL": None, "WIZ_TOKEN": None}


def run_json(run_id: str, state: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    return {
        "RunID": run_id,
        "Configuration": {"ExpectedData": {"NumChunks": 100}},
        "CurrentState": state,
        "ChunkCounts": {"WAITING": 40, "RUNNING": 2, "SUCCEEDED": 58, "FAILED": 0},
        **extra,
    }


MEASURED = run_json(
    "fast",
    Started="2026-11-28T07:00:00Z",
    ChunksPerSecond=12.5,
    EtaSeconds=65.2,
    DurationSeconds=4.0,
)
OLD = run_json("old")
DONE = run_json(
    "done",
    "SUCCEEDED",
    Started="2026-11-28T07:00:00Z",
    Ended="2026-11-28T09:01:00Z",
    DurationSeconds=7260.0,
    ChunksPerSecond=0.5,
    EtaSeconds=0.0,
)


@pytest.fixture
def mock_executor(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """The CLI's client talks to a mock serving the three runs above; the requests it
    got are returned."""
    seen: list[httpx.Request] = []
    runs = {r["RunID"]: r for r in (MEASURED, OLD, DONE)}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/processors/noop/runs":
            return httpx.Response(200, json=list(runs.values()))
        run_id = path.rsplit("/", 1)[-1]
        if path.startswith("/processors/noop/runs/") and run_id in runs:
            return httpx.Response(200, json=runs[run_id])
        return httpx.Response(404, json={"value": "not here"})

    mocked = functools.partial(Client, transport=httpx.MockTransport(handler))
    monkeypatch.setattr(_common, "Client", mocked)
    return seen


def wiz(*args: str) -> Result:
    result = CliRunner().invoke(app, [*args, "--url", "http://127.0.0.1:9"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result


def row(output: str, run_id: str) -> list[str]:
    """The cells of the table row of `run_id` (rich draws cells between `│`)."""
    line = next(line for line in output.splitlines() if f" {run_id} " in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def fields(output: str) -> dict[str, str]:
    """`wiz run`'s label/value grid (labels are one or two words, values after 2+ spaces)."""
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in output.splitlines())
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def test_runs_shows_throughput_and_eta(mock_executor: list[httpx.Request]) -> None:
    out = wiz("runs", "noop").stdout
    assert "chunks/s" in out
    assert "ETA" in out
    assert row(out, "fast")[-2:] == ["12.5/s", "1m 05s"]
    assert row(out, "old")[-2:] == [NOT_KNOWN, NOT_KNOWN]  # an executor without them
    assert row(out, "done")[-2:] == ["0.5/s", NOT_KNOWN]  # no ETA for a finished run
    assert [r.url.path for r in mock_executor] == ["/processors/noop/runs"]


def test_runs_json_passes_the_fields_through(mock_executor: list[httpx.Request]) -> None:
    listed = {r["RunID"]: r for r in json.loads(wiz("runs", "noop", "--json").stdout)}
    assert listed["fast"]["ChunksPerSecond"] == 12.5
    assert listed["fast"]["EtaSeconds"] == 65.2
    assert listed["done"]["Ended"] == "2026-11-28T09:01:00Z"
    assert "ChunksPerSecond" not in listed["old"]  # absent stays absent, not null


def test_run_shows_times_duration_and_rates(mock_executor: list[httpx.Request]) -> None:
    done = fields(wiz("run", "noop", "done").stdout)
    assert done["started"] == "2026-11-28T07:00:00Z"
    assert done["ended"] == "2026-11-28T09:01:00Z"
    assert done["duration"] == "2h 01m"
    assert done["throughput"] == "0.5/s"
    assert done["ETA"] == NOT_KNOWN
    assert fields(wiz("run", "noop", "fast").stdout)["ETA"] == "1m 05s"
    old = fields(wiz("run", "noop", "old").stdout)
    for label in ("throughput", "ETA", "started", "ended", "duration"):
        assert old[label] == NOT_KNOWN


def test_the_texts() -> None:
    assert rate_text(None) == NOT_KNOWN
    assert [rate_text(r) for r in (0.0, 0.1234, 12.345, 1234.5)] == [
        "0/s",
        "0.123/s",
        "12.3/s",
        "1234/s",
    ]
    assert [duration_text(s) for s in (0, 59.4, 61, 3599, 3600, 90061)] == [
        "0s",
        "59s",
        "1m 01s",
        "59m 59s",
        "1h 00m",
        "1d 1h",
    ]
    assert duration_text(None) == duration_text(-1) == NOT_KNOWN
    assert eta_text(30, State.RUNNING) == "30s"
    assert eta_text(30, State.ERRORED) == NOT_KNOWN


def test_a_tracker_takes_the_rates_of_each_snapshot() -> None:
    tracker = RunTracker("noop", "fast")
    assert speed_text(tracker) == f"{NOT_KNOWN}  ETA {NOT_KNOWN}"
    tracker.update(Run.model_validate(MEASURED))
    assert speed_text(tracker) == "12.5/s  ETA 1m 05s"
    tracker.update(Run.model_validate(OLD))  # a snapshot without them: not known again
    assert speed_text(tracker) == f"{NOT_KNOWN}  ETA {NOT_KNOWN}"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("wiz-data"), shutdown_grace=5)
    with EmbeddedExecutor(settings) as ex:
        yield ex.url


def test_a_real_executor_gets_the_columns(url: str) -> None:
    """Whatever this executor sends (the fields or not), the columns are drawn and every
    cell holds a rate, a duration or the en dash."""
    with Client(url) as client:
        client.configure("noop", "rates-1", {"ExpectedData": {"NumChunks": 1}})
        client.add_data("noop", "rates-1", {"ChunkID": "a"})
        final = client.wait("noop", "rates-1", timeout=30)
    result = CliRunner().invoke(app, ["runs", "noop", "--url", url], env=WIDE)
    assert result.exit_code == 0, result.output
    cells = row(result.stdout, "rates-1")
    assert cells[-1] == NOT_KNOWN  # finished: no ETA
    assert cells[-2] == rate_text(final.ChunksPerSecond)
