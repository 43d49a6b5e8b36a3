"""Paged reading of GetData in the Python clients and in `wiz data`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
from typer.testing import CliRunner

from conftest import live_server
from wiz_executor import AsyncClient, Client, Settings
from wiz_executor.api import DataChunkState
from wiz_executor.cli import app
from wiz_executor.pipelines import EmbeddedExecutor

N = 7  # chunks; every third one (c0, c3, c6) fails
FAILED = ["c0", "c3", "c6"]
ALL = [f"c{i}" for i in range(N)]


def chunks() -> list[dict[str, object]]:
    return [{"ChunkID": f"c{i}", "RawData": {"Fail": i % 3 == 0}} for i in range(N)]


class Seen(httpx.HTTPTransport):
    """A real transport that keeps the query of every GetData request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, list[str]]] = []
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/data") and request.method == "GET":
            with self.lock:
                self.queries.append(parse_qs(request.url.query.decode()))
        return super().handle_request(request)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("wiz-data"), shutdown_grace=5)
    with EmbeddedExecutor(settings) as ex, Client(ex.url) as wiz:
        wiz.configure("noop", "r", {"ExpectedData": {"NumChunks": N}})
        wiz.add_data("noop", "r", chunks())
        wiz.wait("noop", "r", timeout=30)
        yield ex.url


def test_iter_data_reads_page_by_page(url: str) -> None:
    seen = Seen()
    with Client(url, transport=seen) as wiz:
        pages = list(wiz.iter_data("noop", "r", page_size=3))
        assert [len(p.In) for p in pages] == [3, 3, 1]
        assert [c.ChunkID for p in pages for c in p.In] == ALL
        assert [c.AssociatedChunkID for p in pages for c in p.Out] == ALL
        assert [q.get("after") for q in seen.queries] == [None, ["c2"], ["c5"]]
        assert all(q["limit"] == ["3"] for q in seen.queries)
        failed = list(wiz.iter_data("noop", "r", state=DataChunkState.FAILED, page_size=2))
        assert [c.ChunkID for p in failed for c in p.In] == FAILED
        assert [c.ChunkID for p in wiz.iter_data("noop", "r", state="FAILED") for c in p.In] == (
            FAILED
        )


async def test_async_iter_data_reads_page_by_page(settings: Settings) -> None:
    async with live_server(settings) as (url, _), AsyncClient(url) as wiz:
        await wiz.configure("noop", "r", {"ExpectedData": {"NumChunks": N}})
        await wiz.add_data("noop", "r", chunks())
        await wiz.wait("noop", "r", timeout=30)
        pages = [page async for page in wiz.iter_data("noop", "r", page_size=3)]
        assert [len(p.In) for p in pages] == [3, 3, 1]
        assert [c.ChunkID for p in pages for c in p.In] == ALL
        failed = [p async for p in wiz.iter_data("noop", "r", state="FAILED", page_size=2)]
        assert [c.ChunkID for p in failed for c in p.In] == FAILED


def test_wiz_data_filters_limits_and_reads_pages(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen()
    real = Client.__init__

    def recording(self: Client, *args: object, **kwargs: object) -> None:
        kwargs["transport"] = seen
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Client, "__init__", recording)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "noop", "r", "--state", "FAILED", "--url", url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["input", "state", "output", "result"]
    assert [line.split()[:3] for line in lines[1:4]] == [[c, "FAILED", f"{c}-out"] for c in FAILED]
    assert "3 chunks" in result.stdout
    assert all(q["state"] == ["FAILED"] for q in seen.queries)
    assert seen.queries  # it read pages, not the whole run
    result = runner.invoke(app, ["data", "noop", "r", "--limit", "4", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [c["ChunkID"] for c in shown["In"]] == ALL[:4]
    assert [c["AssociatedChunkID"] for c in shown["Out"]] == ALL[:4]
    assert seen.queries[-1]["limit"] == ["4"]
    result = runner.invoke(app, ["data", "noop", "r", "--limit", "0", "--url", url])
    assert result.exit_code == 2
