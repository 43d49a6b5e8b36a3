"""`wiz send` and `wiz end`: batches that fit the executor's body limit, end of input,
and what the executor says back (413 hints, Warnings).

Most tests answer through an `httpx.MockTransport` put into the CLI's client, so they can
see every request's size and serve answers the executor on this branch cannot give yet;
the end-of-input tests run against a live executor.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from wiz_executor import Settings
from wiz_executor.cli import _common, app
from wiz_executor.client import Client
from wiz_executor.pipelines import EmbeddedExecutor

STUB = "http://stub.invalid"
MiB = 1024 * 1024


class StubExecutor:
    """Answers AddData like an executor whose body limit is `limit` bytes, and records
    every request (path, body size, ChunkIDs)."""

    def __init__(self, limit: int = 16 * MiB, warnings: list[str] | None = None) -> None:
        self.limit = limit
        self.warnings = warnings
        self.requests: list[tuple[str, int, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        path = request.url.path
        if path.endswith("/end-of-input"):
            self.requests.append((path, 0, []))
            return httpx.Response(
                200, json={"RunID": "r", "CurrentState": "RUNNING", "Accepted": 0}
            )
        if len(body) > self.limit:
            self.requests.append((path, len(body), []))
            message = f"request body is larger than the limit of {self.limit} bytes"
            return httpx.Response(413, json={"value": message})
        chunks = json.loads(body)
        chunks = chunks if isinstance(chunks, list) else [chunks]
        self.requests.append((path, len(body), [c["ChunkID"] for c in chunks]))
        answer: dict[str, Any] = {"Accepted": len(chunks), "Duplicates": 0}
        if self.warnings:
            answer["Warnings"] = self.warnings
        return httpx.Response(200, json=answer)

    @property
    def data_requests(self) -> list[tuple[str, int, list[str]]]:
        return [r for r in self.requests if r[0].endswith("/data")]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Callable[..., StubExecutor]:
    """Make the CLI's clients talk to a StubExecutor."""

    def install(**options: Any) -> StubExecutor:
        executor = StubExecutor(**options)
        patched = functools.partial(Client, transport=httpx.MockTransport(executor))
        monkeypatch.setattr(_common, "Client", patched)  # every verb's client
        return executor

    return install


def wiz(url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, [*args, "--url", url], input=input)


def chunks_file(tmp_path: Path, sizes: list[int]) -> Path:
    path = tmp_path / "chunks.json"
    path.write_text(
        json.dumps([{"ChunkID": f"c{i}", "RawData": "x" * n} for i, n in enumerate(sizes)])
    )
    return path


def test_send_batches_stay_below_max_batch_bytes(
    stub: Callable[..., StubExecutor], tmp_path: Path
) -> None:
    executor = stub()
    file = chunks_file(tmp_path, [1000] * 10)
    result = wiz(STUB, "send", "noop", "r", str(file), "--max-batch-bytes", "3000", "--json")
    assert result.exit_code == 0, result.output
    sizes = [size for _, size, _ in executor.data_requests]
    assert len(sizes) > 1, sizes  # a count of 100 alone would have sent one batch
    assert all(size <= 3000 for size in sizes), sizes
    sent = [cid for _, _, ids in executor.data_requests for cid in ids]
    assert sent == [f"c{i}" for i in range(10)]
    assert json.loads(result.stdout) == {"Sent": 10, "Accepted": 10, "Duplicates": 0}


def test_send_splits_a_file_larger_than_the_default_body_limit(
    stub: Callable[..., StubExecutor], tmp_path: Path
) -> None:
    """20 MiB in 40 chunks: by count alone (100 a batch) it was one 20 MiB body, a 413."""
    executor = stub(limit=16 * MiB)
    file = chunks_file(tmp_path, [MiB // 2] * 40)
    result = wiz(STUB, "send", "noop", "r", str(file))
    assert result.exit_code == 0, result.output
    assert len(executor.data_requests) >= 2
    assert all(size <= 16 * MiB for _, size, _ in executor.data_requests)
    assert "40 accepted" in result.stdout


def test_a_chunk_larger_than_a_batch_may_be_is_refused_before_sending(
    stub: Callable[..., StubExecutor], tmp_path: Path
) -> None:
    executor = stub()
    file = chunks_file(tmp_path, [10, 5000, 10])
    result = wiz(STUB, "send", "noop", "r", str(file), "--max-batch-bytes", "2000")
    assert result.exit_code == 2, result.output
    assert "chunk 'c1'" in result.stderr
    assert "--max-batch-bytes" in result.stderr
    assert executor.requests == []  # nothing half-sent


def test_a_413_says_what_to_do(stub: Callable[..., StubExecutor], tmp_path: Path) -> None:
    """The executor's limit is lower than the batch limit the CLI was given."""
    stub(limit=1000)
    file = chunks_file(tmp_path, [600, 600])
    result = wiz(STUB, "send", "noop", "r", str(file))
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "limit of 1000 bytes" in error
    assert "--max-batch-bytes" in error  # the CLI's side
    assert "--max-body-bytes" in error  # the executor's side


def test_send_prints_the_warnings_of_adddata_answers(
    stub: Callable[..., StubExecutor], tmp_path: Path
) -> None:
    stub(warnings=["unknown field Colour ignored"])
    file = chunks_file(tmp_path, [10, 10, 10])
    result = wiz(STUB, "send", "noop", "r", str(file), "--batch-size", "1", "--json")
    assert result.exit_code == 0, result.output
    assert "warning: unknown field Colour ignored" in result.stderr
    assert result.stderr.count("warning:") == 1  # the same words once, not once a batch
    assert json.loads(result.stdout)["Accepted"] == 3  # stdout stays pure JSON


def test_send_end_of_input_comes_after_the_last_chunk(
    stub: Callable[..., StubExecutor], tmp_path: Path
) -> None:
    executor = stub()
    file = chunks_file(tmp_path, [10, 10, 10])
    result = wiz(STUB, "send", "noop", "r", str(file), "--batch-size", "2", "--end-of-input")
    assert result.exit_code == 0, result.output
    paths = [path for path, _, _ in executor.requests]
    assert paths == ["/processors/noop/runs/r/data"] * 2 + ["/processors/noop/runs/r/end-of-input"]
    assert "end of input" in result.stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("wiz-data"), shutdown_grace=5)
    with EmbeddedExecutor(settings) as ex:
        yield ex.url


def test_send_end_of_input_completes_a_run_of_unknown_size(live: str, tmp_path: Path) -> None:
    assert wiz(live, "configure", "noop", "eoi-send").exit_code == 0  # NumChunks 0
    file = chunks_file(tmp_path, [1, 1])
    result = wiz(live, "send", "noop", "eoi-send", str(file), "--end-of-input")
    assert result.exit_code == 0, result.output
    with Client(live) as client:
        run = client.wait("noop", "eoi-send", timeout=30)
    assert run.CurrentState.value == "SUCCEEDED"
    assert run.InputClosed is True


def test_end_declares_end_of_input(live: str) -> None:
    assert wiz(live, "configure", "noop", "eoi-verb").exit_code == 0
    with Client(live) as client:
        client.add_data("noop", "eoi-verb", [{"ChunkID": "a"}, {"ChunkID": "b"}])
    result = wiz(live, "end", "noop", "eoi-verb", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["Accepted"] == 2
    with Client(live) as client:
        assert client.wait("noop", "eoi-verb", timeout=30).CurrentState.value == "SUCCEEDED"
    human = wiz(live, "end", "noop", "eoi-verb")
    assert human.exit_code == 0, human.output
    assert "noop/eoi-verb" in human.stdout
    assert "SUCCEEDED" in human.stdout
    missing = wiz(live, "end", "noop", "no-such-run")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: no run 'no-such-run'")
