"""HTTP itself, on every route: bad bytes are a 400, a 405 lists every method the path
takes, and HEAD answers as GET without the body."""

from __future__ import annotations

import httpx
import pytest

from _gates import configure, run_path
from conftest import live_server, wait_run_done
from test_metrics import DATA_ROUTE, scrape, value
from wiz_executor import Executor, Settings

pytestmark = pytest.mark.anyio

R = run_path("noop", "r")

BAD_UTF8_BODIES = [
    b'{"ChunkID":"\xff"}',
    b'[{"ChunkID":"c"},{"ChunkID":"\xff"}]',
    b'{"ChunkID":"c","RawData":{"\xff":1}}',
    b'{"ChunkID":"c","RawData":"\xc3"}',
    b'{"ChunkID":"c","AssociatedChunkID":"\xed\xa0\x80"}',  # an encoded surrogate
    # An unknown field first: the exact decoder stops there, the lenient one meets the byte.
    b'{"Foo":1,"ChunkID":"\xff"}',
    b'{"ChunkID":"c","Foo":"\xff"}',
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


BAD_PATHS = [
    ("GET", "/processors/%FF"),
    ("GET", "/processors/noop/runs/%C3"),
    ("POST", "/processors/noop/runs/%FF/config"),
    ("GET", "/processors/noop/runs/%FF/config"),
    ("POST", "/processors/noop/runs/%FF/data"),  # the AddData fast path
    ("POST", "/processors/%FF/runs/r/data"),
    ("GET", R + "/data/input/%ED%A0%80"),
    ("GET", R + "/data/output/a%FFb"),
    ("DELETE", "/processors/noop/runs/%FF"),
    ("POST", "/processors/noop/runs/%FF/end-of-input"),
    ("GET", "/processors/noop/runs/%FF/events"),
    ("GET", "/static/%FF"),
]


async def test_invalid_utf8_in_a_path_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    await configure(client, "noop", "r")
    for method, path in BAD_PATHS:
        resp = await client.request(method, path, json={"ChunkID": "c"})
        assert resp.status_code == 400, (method, path, resp.text)
        assert "UTF-8" in resp.json()["value"], resp.text
    runs = (await client.get("/processors/noop/runs")).json()
    assert [r["RunID"] for r in runs] == ["r"]
    m = await scrape(client)
    assert value(m, "wiz_http_requests_total", method="POST", route="unmatched", status="400") == 4


async def test_a_real_replacement_character_in_a_path_still_works(
    client: httpx.AsyncClient,
) -> None:
    """U+FFFD sent as its UTF-8 bytes is a valid run ID, not a decoding failure."""
    await configure(client, "noop", "\ufffd", num_chunks=1)
    resp = await client.post("/processors/noop/runs/%EF%BF%BD/data", json={"ChunkID": "c"})
    assert resp.status_code == 200, resp.text
    assert (await client.get("/processors/noop/runs/%EF%BF%BD")).json()["RunID"] == "\ufffd"


ALLOW = [
    (R, "DELETE, GET, HEAD"),
    (R + "/config", "GET, HEAD, PATCH, POST"),
    (R + "/pause", "POST"),
    (R + "/resume", "POST"),
    ("/executor", "GET, HEAD, PATCH"),
    (R + "/data", "GET, HEAD, POST"),
    (R + "/end-of-input", "POST"),
    (R + "/data/input/c", "GET, HEAD"),
    (R + "/data/output/c-out", "GET, HEAD"),
    (R + "/events", "GET, HEAD"),
    ("/processors", "GET, HEAD"),
    ("/processors/noop", "GET, HEAD"),
    ("/processors/noop/runs", "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/openapi.json", "GET, HEAD"),
    ("/docs", "GET, HEAD"),
]


@pytest.mark.parametrize(("path", "allow"), ALLOW)
async def test_a_405_lists_every_method_the_path_takes(
    client: httpx.AsyncClient, path: str, allow: str
) -> None:
    for method in ("PUT", "PATCH"):
        if method in allow:
            continue
        resp = await client.request(method, path)
        assert resp.status_code == 405, resp.text
        assert resp.headers["allow"] == allow
        assert resp.json()["value"]


HEADS = [
    R,
    R + "/config",
    R + "/data",
    R + "/data/input/c",
    R + "/data/output/c-out",
    "/processors",
    "/processors/noop",
    "/processors/noop/runs",
    "/processors/nope",  # an error answers the same way
    "/healthz",
    "/openapi.json",
    "/docs",
    "/",
    "/static/dashboard.js",
]


async def test_head_answers_as_get_without_the_body(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=2)
    assert (await client.post(R + "/data", json={"ChunkID": "c"})).status_code == 200
    assert (await client.post(R + "/data", json={"ChunkID": "d"})).status_code == 200
    # A finished run: a running one's JSON changes between the GET and the HEAD (its
    # duration and rate), and with it the length.
    await wait_run_done(client, "noop", "r")
    for path in HEADS:
        got = await client.get(path)
        head = await client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == str(len(got.content)), path


async def test_head_on_an_event_stream_ends(client: httpx.AsyncClient) -> None:
    """GET on /events never ends by itself; HEAD must still answer and finish."""
    await configure(client, "noop", "r")
    for path in ("/events", R + "/events"):
        head = await client.head(path)
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        assert head.content == b""
    m = await scrape(client)
    assert value(m, "wiz_http_requests_total", method="HEAD", route="/events", status="200") == 1


async def test_head_through_a_real_server(settings: Settings) -> None:
    """uvicorn, too, sends HEAD's headers with GET's Content-Length and no body."""
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        got = await http.get("/processors")
        head = await http.head("/processors")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        assert (await http.head("/events")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200  # the connection still works
