"""HTTP itself, on every route: bad bytes are a 400, a 405 lists every method the path
takes, and HEAD answers as GET without the body."""

from __future__ import annotations

import httpx
import pytest

from _gates import configure, run_path
from test_metrics import DATA_ROUTE, scrape, value
from wiz_executor import Executor

pytestmark = pytest.mark.anyio

R = run_path("noop", "r")

BAD_UTF8_BODIES = [
    b'{"ChunkID":"\xff"}',
    b'[{"ChunkID":"c"},{"ChunkID":"\xff"}]',
    b'{"ChunkID":"c","RawData":{"\xff":1}}',
    b'{"ChunkID":"c","RawData":"\xc3"}',
    b'{"ChunkID":"c","AssociatedChunkID":"\xed\xa0\x80"}',  # an encoded surrogate
]


async def test_invalid_utf8_in_an_add_data_body_is_a_counted_400(
    client: httpx.AsyncClient,
) -> None:
    await configure(client, "noop", "r")
    for body in BAD_UTF8_BODIES:
        resp = await client.post(R + "/data", content=body)
        assert resp.status_code == 400, (body, resp.text)
        assert "UTF-8" in resp.json()["value"], resp.text
    assert (await client.get(R)).json()["ChunkCounts"]["WAITING"] == 0
    m = await scrape(client)
    count = value(m, "wiz_http_requests_total", method="POST", route=DATA_ROUTE, status="400")
    assert count == len(BAD_UTF8_BODIES)


async def test_a_fast_path_500_is_counted_too(
    client: httpx.AsyncClient, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should AddData ever fail with a bug, the answer is still in the HTTP metrics."""
    await configure(client, "noop", "r")

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(executor, "add_chunks", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        await client.post(R + "/data", json={"ChunkID": "c"})
    m = await scrape(client)
    assert value(m, "wiz_http_requests_total", method="POST", route=DATA_ROUTE, status="500") == 1


async def test_invalid_utf8_in_a_configure_body_is_a_400(client: httpx.AsyncClient) -> None:
    for body in (b'{"Processor":"\xff"}', b'{"Processor":{"\xff":1}}'):
        resp = await client.post(R + "/config", content=body)
        assert resp.status_code == 400, resp.text
    assert (await client.get("/processors/noop/runs")).json() == []
