"""Every client verb of `wiz`, through typer's CliRunner, against a live executor.

The CLI is blocking, so the executor runs on its own thread (`EmbeddedExecutor`).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from wiz_executor import Settings
from wiz_executor.api import DataChunkState
from wiz_executor.cli import app
from wiz_executor.cli._progress import RunTracker, render_run
from wiz_executor.client import ChunkEvent, Client
from wiz_executor.pipelines import EmbeddedExecutor


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("wiz-data"), shutdown_grace=5)
    with EmbeddedExecutor(settings) as ex:
        yield ex.url


def wiz(url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, [*args, "--url", url], input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def test_processors(url: str) -> None:
    assert "noop" in ok(wiz(url, "processors")).stdout
    listed = as_json(wiz(url, "processors", "--json"))
    assert {"ProcID": "noop", "Name": "No Operation Processor", "Version": "0.1.0"} in listed


def test_configure_send_watch_data_delete(url: str, tmp_path: Path) -> None:
    configured = as_json(
        wiz(
            url,
            "configure",
            "noop",
            "cli-1",
            "--num-chunks",
            "4",
            "--max-workers",
            "2",
            "--work-model",
            "pool",
            "--processor-config",
            '{"SleepMs": 1}',
            "--json",
        )
    )
    assert configured["CurrentState"] == "CONFIGURED"
    config = configured["Configuration"]
    assert config["ExpectedData"]["NumChunks"] == 4
    assert config["ExecutorConfig"]["MaxWorkers"] == 2
    assert config["ExecutorConfig"]["WorkModel"] == "POOL"
    assert config["Processor"] == {"SleepMs": 1}

    chunks = tmp_path / "chunks.json"
    chunks.write_text(json.dumps([{"n": 1}, {"n": 2}, {"ChunkID": "named", "RawData": "x"}]))
    sent = as_json(wiz(url, "send", "noop", "cli-1", str(chunks), "--batch-size", "2", "--json"))
    assert sent == {"Sent": 3, "Accepted": 3, "Duplicates": 0}
    # NDJSON on stdin; the human summary this time.
    out = ok(wiz(url, "send", "noop", "cli-1", "-", "--id-prefix", "line-", input='{"n": 3}\n'))
    assert "1 accepted" in out.stdout

    watched = ok(wiz(url, "watch", "noop", "cli-1", "--timeout", "30"))
    assert "noop/cli-1 SUCCEEDED: 4 succeeded, 0 failed" in watched.stdout

    runs = ok(wiz(url, "runs", "noop"))
    assert "cli-1" in runs.stdout
    assert "cli-1" in [r["RunID"] for r in as_json(wiz(url, "runs", "noop", "--json"))]

    shown = ok(wiz(url, "run", "noop", "cli-1"))
    assert "SUCCEEDED" in shown.stdout
    assert "POOL" in shown.stdout
    assert as_json(wiz(url, "run", "noop", "cli-1", "--json"))["ChunkCounts"]["SUCCEEDED"] == 4

    data = as_json(wiz(url, "data", "noop", "cli-1", "--json"))
    assert [c["ChunkID"] for c in data["In"]] == ["chunk-0", "chunk-1", "named", "line-0"]
    assert [c["RawData"] for c in data["Out"]] == [{"n": 1}, {"n": 2}, "x", {"n": 3}]
    table = ok(wiz(url, "data", "noop", "cli-1")).stdout
    assert "named-out" in table
    assert "4 chunks" in table

    deleted = ok(wiz(url, "delete", "noop", "cli-1"))
    assert "deleted noop/cli-1 (it was SUCCEEDED)" in deleted.stdout
    assert wiz(url, "run", "noop", "cli-1").exit_code == 1


def test_configure_from_file_with_downstream(url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"ExpectedData": {"NumChunks": 1}, "Processor": {"SleepMs": 0}}))
    host = url.removeprefix("http://")
    ok(wiz(url, "configure", "noop", "cli-sink"))
    out = ok(
        wiz(
            url,
            "configure",
            "noop",
            "cli-src",
            "--file",
            str(config),
            "--downstream",
            f"{host}/noop/cli-sink",
        )
    )
    assert "configured noop/cli-src: CONFIGURED" in out.stdout
    with Client(url) as client:
        ec = client.config("noop", "cli-src").ExecutorConfig
        assert ec.SendDownstream
        assert [(d.Hostname, d.ProcID, d.RunID) for d in ec.DownstreamLocations or []] == [
            (host, "noop", "cli-sink")
        ]
        client.add_data("noop", "cli-src", {"ChunkID": "a", "RawData": 1})
        assert client.wait("noop", "cli-src", timeout=30).CurrentState.value == "SUCCEEDED"
        assert client.input_chunk("noop", "cli-sink", "a-out").RawData == 1


def test_watch_json_and_errored_exit_code(url: str) -> None:
    with Client(url) as client:
        client.configure("noop", "cli-bad", {"ExpectedData": {"NumChunks": 2}})
        client.add_data(
            "noop", "cli-bad", [{"ChunkID": "good"}, {"ChunkID": "bad", "RawData": {"Fail": True}}]
        )
    result = wiz(url, "watch", "noop", "cli-bad", "--json")
    assert result.exit_code == 3, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["event"] == "final"
    assert lines[-1]["CurrentState"] == "ERRORED"
    human = wiz(url, "watch", "noop", "cli-bad")
    assert human.exit_code == 3
    assert "ERRORED: 1 succeeded, 1 failed" in human.stdout
    assert "bad: noop was asked to fail chunk 'bad' (Fail=true)" in human.stdout


def test_api_errors_are_one_line_with_exit_code_1(url: str) -> None:
    result = wiz(url, "run", "noop", "does-not-exist")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no run 'does-not-exist' of processor 'noop'")
    assert "Traceback" not in result.output
    conflict = wiz(url, "configure", "noop", "cli-c", "--num-chunks", "1")
    assert conflict.exit_code == 0
    again = wiz(url, "configure", "noop", "cli-c", "--num-chunks", "2")
    assert again.exit_code == 1
    assert "already configured differently" in again.stderr
    invalid = wiz(url, "configure", "noop", "cli-d", "--processor-config", '{"SleepMs": -1}')
    assert invalid.exit_code == 1
    assert "SleepMs" in invalid.stderr


def test_unreachable_executor(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"
    result = wiz(dead, "processors")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach the executor at {dead}")


def test_usage_errors_exit_2(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"n": 1}\nnot json\n')
    result = wiz(url, "send", "noop", "whatever", str(bad))
    assert result.exit_code == 2
    assert "line 2 is not valid JSON" in result.stderr
    missing = wiz(url, "configure", "noop", "x", "--file", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    assert wiz(url, "configure", "noop", "x", "--processor-config", "{").exit_code == 2
    assert wiz(url, "configure", "noop", "x", "--downstream", "nohost").exit_code == 2
    assert CliRunner().invoke(app, ["runs"]).exit_code == 2  # missing argument


def test_url_from_the_environment(url: str) -> None:
    result = CliRunner().invoke(app, ["processors", "--json"], env={"WIZ_URL": url})
    assert "noop" in [p["ProcID"] for p in json.loads(ok(result).stdout)]


def test_run_tracker_can_be_drawn_while_it_is_updated() -> None:
    # `wiz watch` and `wiz pipeline run` update a tracker from the main thread while
    # rich's Live draws it from its refresh thread: a draw must never see the tracker
    # half-changed ("dictionary changed size during iteration" killed the refresh).
    tracker = RunTracker("noop", "r")
    errors: list[BaseException] = []
    stop = threading.Event()

    def draw() -> None:
        while not stop.is_set():
            try:
                render_run(tracker)
            except RuntimeError as exc:
                errors.append(exc)
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    drawer = threading.Thread(target=draw)
    drawer.start()
    try:
        for i in range(3000):
            state = DataChunkState.RUNNING if i % 2 else DataChunkState.SUCCEEDED
            tracker.update(ChunkEvent(ProcID="noop", RunID="r", ChunkID=f"c{i}", State=state))
            if errors:
                break
    finally:
        stop.set()
        drawer.join()
        sys.setswitchinterval(interval)
    assert errors == []
    assert sum(tracker.counts.values()) == 3000


def test_configure_prints_the_executors_warnings_on_stderr(url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"ExpectedData": {"NumChunk": 1}, "Processor": {"test": "test"}}))
    result = ok(wiz(url, "configure", "noop", "cli-warn", "--file", str(config), "--json"))
    # stdout stays the run as JSON; the warnings go to stderr.
    assert json.loads(result.stdout)["Warnings"] == ["unknown field Processor.test ignored"]
    assert "warning: unknown field Processor.test ignored" in result.stderr
    # A typo the client's own model drops is said too, since it is never sent.
    assert "warning: unknown field ExpectedData.NumChunk" in result.stderr
    human = ok(wiz(url, "configure", "noop", "cli-warn-2", "--processor-config", '{"x": 1}'))
    assert "warning: unknown field Processor.x ignored" in human.stderr
    assert "configured noop/cli-warn-2" in human.stdout
