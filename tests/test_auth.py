"""Token authentication and the browser defences (`server/_guard.py`), on every kind of
route: FastAPI's, the AddData fast path, event streams, metrics, the open pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import live_server, wait_run_done
from wiz_executor import Executor, Settings, create_app

TOKEN = "s3cret-token_for.tests~1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WIRE = Path(__file__).parent / "data" / "wire"
CONFIG = {"ExpectedData": {"NumChunks": 1}}

pytestmark = pytest.mark.anyio

Connect = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def connect(settings: Settings) -> Connect:
    """`async with connect(**settings_changes) as http:` an ASGI client of an executor
    started with those settings (the fast path and the guard included)."""

    @asynccontextmanager
    async def open_client(
        base_url: str = "http://127.0.0.1:8080", **changes: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        async with Executor(replace(settings, **changes)) as ex:
            await ex.recovered()  # a second client of a test reopens its journal
            transport = httpx.ASGITransport(app=create_app(executor=ex))
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
                yield http

    return open_client


def assert_challenge(resp: httpx.Response, error: str | None) -> None:
    assert resp.status_code == 401, resp.text
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="wiz-executor"'), challenge
    if error is None:
        assert "error=" not in challenge  # RFC 6750 §3.1: no code when none was sent
    else:
        assert f'error="{error}"' in challenge
    if resp.request.method != "HEAD":
        assert "value" in resp.json()


# One request of every kind of route: FastAPI's, the fast path, streams, metrics, a
# path no route serves (which must not tell a stranger it does not exist).
PROTECTED = [
    ("GET", "/processors"),
    ("GET", "/processors/noop/runs"),
    ("POST", "/processors/noop/runs/r/config"),
    ("POST", "/processors/noop/runs/r/data"),
    ("GET", "/processors/noop/runs/r/data"),
    ("POST", "/processors/noop/runs/r/end-of-input"),
    ("DELETE", "/processors/noop/runs/r"),
    ("GET", "/processors/noop/runs/r/events"),
    ("GET", "/events"),
    ("GET", "/metrics"),
    ("HEAD", "/processors"),
    ("GET", "/no/such/path"),
]


def body_for(method: str, path: str) -> bytes | None:
    if path.endswith("/config"):
        return json.dumps(CONFIG).encode()
    if path.endswith("/data") and method == "POST":
        return b'{"ChunkID":"c"}'
    return None


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_no_token_is_401_with_a_bearer_challenge(
    connect: Connect, method: str, path: str
) -> None:
    async with connect(token=TOKEN) as http:
        resp = await http.request(method, path, content=body_for(method, path))
        assert_challenge(resp, None)
        # another scheme is no bearer token either
        resp = await http.request(method, path, headers={"Authorization": f"Basic {TOKEN}"})
        assert resp.status_code == 401
        assert "error=" not in resp.headers["www-authenticate"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_a_wrong_token_is_401_invalid_token(connect: Connect, method: str, path: str) -> None:
    async with connect(token=TOKEN) as http:
        for wrong in (TOKEN + "x", TOKEN[:-1], "", "x" * len(TOKEN)):
            resp = await http.request(
                method,
                path,
                content=body_for(method, path),
                headers={"Authorization": f"Bearer {wrong}"},
            )
            assert resp.status_code == 401, (wrong, resp.text)
            if wrong:
                assert 'error="invalid_token"' in resp.headers["www-authenticate"]
        # nothing was created by any of them
        assert (await http.get("/processors/noop/runs", headers=AUTH)).json() == []


async def test_the_right_token_opens_every_route(connect: Connect) -> None:
    async with connect(token=TOKEN) as http:
        run = "/processors/noop/runs/r"
        assert (await http.get("/processors", headers=AUTH)).status_code == 200
        assert (await http.post(run + "/config", json=CONFIG, headers=AUTH)).status_code == 200
        resp = await http.post(run + "/data", json={"ChunkID": "c"}, headers=AUTH)  # fast path
        assert resp.json() == {"Accepted": 1, "Duplicates": 0}
        http.headers.update(AUTH)
        await wait_run_done(http, "noop", "r")
        # the run's event stream ends by itself once the run is done
        events = await http.get(run + "/events")
        assert events.status_code == 200
        assert "event: done" in events.text
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.head("/processors")).status_code == 200
        # the scheme's name is case-insensitive (RFC 7235)
        lower = {"Authorization": f"bearer {TOKEN}"}
        assert (await http.get("/processors", headers=lower)).status_code == 200
        assert (await http.delete(run)).status_code == 200


async def test_health_and_the_pages_stay_open(connect: Connect) -> None:
    async with connect(token=TOKEN) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        for path in ("/", "/static/dashboard.js", "/docs", "/docs/assets/swagger-ui.css"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/openapi.json")).status_code == 200


async def test_metrics_public_opens_metrics_only(connect: Connect) -> None:
    async with connect(token=TOKEN, metrics_public=True) as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/processors")).status_code == 401
        assert (await http.get("/events")).status_code == 401


async def test_without_a_token_nothing_is_asked(connect: Connect) -> None:
    async with connect() as http:
        resp = await http.post("/processors/noop/runs/r/config", json=CONFIG)
        assert resp.status_code == 200
        # a client that sends a token anyway is served too
        assert (await http.get("/processors", headers=AUTH)).status_code == 200


async def test_refusals_are_counted_in_the_metrics(connect: Connect) -> None:
    async with connect(token=TOKEN) as http:
        assert (await http.post("/processors/noop/runs/r/data", json={})).status_code == 401
        text = (await http.get("/metrics", headers=AUTH)).text
        assert 'route="refused",status="401"' in text.replace(" ", "")


# -- browser defences ------------------------------------------------------------------

EVIL = "http://evil.example"


async def runs_held(http: httpx.AsyncClient) -> list[Any]:
    resp = await http.get("/processors/noop/runs")
    assert resp.status_code == 200, resp.text
    body: list[Any] = resp.json()
    return body


async def test_a_cross_origin_simple_post_is_403_and_changes_nothing(connect: Connect) -> None:
    """What any web page can send without a CORS preflight: a text/plain POST."""
    async with connect() as http:
        plain = {"Origin": EVIL, "Content-Type": "text/plain"}
        resp = await http.post(
            "/processors/noop/runs/r/config", content=json.dumps(CONFIG), headers=plain
        )
        assert resp.status_code == 403, resp.text
        assert EVIL in resp.json()["value"]
        assert await runs_held(http) == []
        # the run exists now (configured without a browser), and AddData, answered by the
        # fast path, is refused the same way
        assert (await http.post("/processors/noop/runs/r/config", json=CONFIG)).is_success
        resp = await http.post(
            "/processors/noop/runs/r/data", content='{"ChunkID":"c"}', headers=plain
        )
        assert resp.status_code == 403, resp.text
        resp = await http.delete("/processors/noop/runs/r", headers=plain)
        assert resp.status_code == 403
        (run,) = await runs_held(http)
        assert run["ChunkCounts"]["WAITING"] + run["ChunkCounts"]["SUCCEEDED"] == 0


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1:9999", "https://127.0.0.1:8080"])
async def test_any_other_origin_is_403(connect: Connect, origin: str) -> None:
    """`null` (sandboxed frames, file:// pages), another port, another scheme."""
    async with connect() as http:
        resp = await http.post(
            "/processors/noop/runs/r/config", json=CONFIG, headers={"Origin": origin}
        )
        assert resp.status_code == 403, resp.text
        assert await runs_held(http) == []


async def test_the_executors_own_origin_is_served(connect: Connect) -> None:
    async with connect() as http:  # Host: 127.0.0.1:8080
        own = {"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}
        resp = await http.post("/processors/noop/runs/r/config", json=CONFIG, headers=own)
        assert resp.status_code == 200, resp.text
        resp = await http.post("/processors/noop/runs/r/data", json={"ChunkID": "c"}, headers=own)
        assert resp.status_code == 200, resp.text
    async with connect(base_url="http://localhost") as http:  # default port: no :80
        own = {"Origin": "http://localhost"}
        resp = await http.post("/processors/noop/runs/r/config", json=CONFIG, headers=own)
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(("site", "status"), [("cross-site", 403), ("same-site", 403)])
async def test_sec_fetch_site_from_elsewhere_is_403(
    connect: Connect, site: str, status: int
) -> None:
    async with connect() as http:
        resp = await http.post(
            "/processors/noop/runs/r/config", json=CONFIG, headers={"Sec-Fetch-Site": site}
        )
        assert resp.status_code == status, resp.text
        assert await runs_held(http) == []


@pytest.mark.parametrize("site", ["none", "same-origin"])
async def test_sec_fetch_site_typed_or_same_origin_is_served(connect: Connect, site: str) -> None:
    async with connect() as http:
        resp = await http.get("/", headers={"Sec-Fetch-Site": site})
        assert resp.status_code == 200
        resp = await http.get("/processors", headers={"Sec-Fetch-Site": site})
        assert resp.status_code == 200


async def test_allow_origin_lets_that_page_in(connect: Connect) -> None:
    ui = "http://ui.example:3000"
    page = {"Origin": ui, "Sec-Fetch-Site": "cross-site"}
    async with connect() as http:
        resp = await http.post("/processors/noop/runs/r/config", json=CONFIG, headers=page)
        assert resp.status_code == 403
    async with connect(allowed_origins=("HTTP://UI.example:3000/",)) as http:
        resp = await http.post("/processors/noop/runs/r/config", json=CONFIG, headers=page)
        assert resp.status_code == 200, resp.text
        other = {"Origin": "http://ui.example:3001", "Sec-Fetch-Site": "cross-site"}
        resp = await http.post("/processors/noop/runs/s/config", json=CONFIG, headers=other)
        assert resp.status_code == 403


async def test_a_rebinding_host_is_421_and_changes_nothing(connect: Connect) -> None:
    async with connect() as http:
        evil = {"Host": "evil.example:8080"}
        resp = await http.post("/processors/noop/runs/r/config", json=CONFIG, headers=evil)
        assert resp.status_code == 421, resp.text
        assert "--allow-host" in resp.json()["value"]
        resp = await http.post("/processors/noop/runs/r/data", json={"ChunkID": "c"}, headers=evil)
        assert resp.status_code == 421
        assert (await http.get("/healthz", headers=evil)).status_code == 421
        assert await runs_held(http) == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8080", "127.3.4.5", "localhost:1234", "LOCALHOST", "localhost.", "[::1]:8080"],
)
async def test_loopback_hosts_are_served(connect: Connect, host: str) -> None:
    async with connect() as http:
        assert (await http.get("/processors", headers={"Host": host})).status_code == 200


async def test_the_address_a_request_arrived_on_is_a_good_host(connect: Connect) -> None:
    """An executor bound to 10.1.2.3 is reached as http://10.1.2.3:PORT (the ASGI scope's
    `server`, which uvicorn fills from the socket)."""
    async with connect(base_url="http://10.1.2.3:8080") as http:
        assert (await http.get("/processors")).status_code == 200
        assert (await http.get("/processors", headers={"Host": "10.1.2.4"})).status_code == 421


async def test_allow_host_lets_a_name_in(connect: Connect) -> None:
    name = {"Host": "wiz.internal:8080"}
    async with connect(allowed_hosts=("Wiz.Internal",)) as http:
        assert (await http.get("/processors", headers=name)).status_code == 200
        assert (await http.get("/processors", headers={"Host": "x.internal"})).status_code == 421
    async with connect(allowed_hosts=("*",)) as http:
        assert (await http.get("/processors", headers=name)).status_code == 200


async def test_the_host_is_checked_before_the_token(connect: Connect) -> None:
    async with connect(token=TOKEN) as http:
        resp = await http.get("/processors", headers={"Host": "evil.example", **AUTH})
        assert resp.status_code == 421
        resp = await http.get("/processors", headers={"Origin": EVIL, **AUTH})
        assert resp.status_code == 403


# -- the OpenAPI document --------------------------------------------------------------


async def test_openapi_documents_the_token_and_the_refusals(connect: Connect) -> None:
    async with connect(token=TOKEN) as http:
        doc = (await http.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    paths = doc["paths"]
    for path, item in paths.items():
        for method, op in item.items():
            assert {"403", "421"} <= set(op["responses"]), (method, path)
            if path in ("/healthz", "/"):
                assert "security" not in op, path
                assert "401" not in op["responses"], path
            else:
                assert op["security"] == [{"bearerToken": []}], (method, path)
                assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    assert "security" in paths["/metrics"]["get"]


async def test_openapi_without_a_token_documents_none(connect: Connect) -> None:
    async with connect() as http:
        doc = (await http.get("/openapi.json")).json()
    assert "securitySchemes" not in doc.get("components", {})
    op = doc["paths"]["/processors"]["get"]
    assert "security" not in op
    assert "401" not in op["responses"]
    assert "403" in op["responses"]
    async with connect(token=TOKEN, metrics_public=True) as http:
        doc = (await http.get("/openapi.json")).json()
    assert "security" not in doc["paths"]["/metrics"]["get"]


# -- the original Go client, which cannot send a token ---------------------------------


async def test_the_go_clients_requests_still_work_on_a_default_executor(
    settings: Settings,
) -> None:
    """Its captured Configure and AddData bodies, with the headers Go's net/http sends
    (no Authorization, no Origin), against a real server on loopback."""
    go = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
    config = (WIRE / "POST_config_request_body.json").read_bytes()
    chunks = [
        (WIRE / "POST_data_request_body_stateunset.json").read_bytes(),
        (WIRE / "POST_data_request_body_statewaiting.json").read_bytes(),
    ]
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/processors/noop/runs/go/config", content=config, headers=go)
        assert resp.status_code == 200, resp.text
        for body in chunks:
            resp = await http.post("/processors/noop/runs/go/data", content=body, headers=go)
            assert resp.status_code == 200, resp.text
        assert (await http.get("/processors/noop/runs/go", headers=go)).status_code == 200
