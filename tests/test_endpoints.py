"""Every endpoint answers every request with the right code and an honest body: errors
are `{"value": "..."}`, a 200 is never `null`, and no input, however bad, gets a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from _gates import add, configure, run_path
from conftest import wait_run_done

pytestmark = pytest.mark.anyio

R = run_path("noop", "r")


@pytest.fixture
async def populated(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A finished run with a succeeded and a failed chunk, and an open one."""
    await configure(client, "noop", "r", num_chunks=2)
    chunks = [{"ChunkID": "ok", "RawData": [1]}, {"ChunkID": "bad", "RawData": {"Fail": True}}]
    assert (await add(client, "noop", "r", chunks)).is_success
    await wait_run_done(client, "noop", "r")
    await configure(client, "noop", "open")
    return client


def assert_honest(resp: httpx.Response) -> None:
    where = f"{resp.request.method} {resp.request.url.path}"
    assert resp.status_code < 500, f"{where}: {resp.status_code} {resp.text}"
    body = resp.json()
    if resp.is_success:
        assert body is not None, f"{where} answered 200 with null"
    else:
        assert set(body) == {"value"}, f"{where}: {body}"
        assert isinstance(body["value"], str)
        assert body["value"]


GOOD: list[tuple[str, str, Any]] = [
    ("GET", "/processors", None),
    ("GET", "/processors/noop", None),
    ("GET", "/processors/noop/runs", None),
    ("GET", R, None),
    ("GET", R + "/config", None),
    ("GET", R + "/data", None),
    ("GET", R + "/data/input/ok", None),
    ("GET", R + "/data/output/ok-out", None),
    ("GET", R + "/data/input/bad", None),
    ("POST", R + "/data", {"ChunkID": "ok", "RawData": [1]}),
    ("POST", R + "/config", {"ExpectedData": {"NumChunks": 2}}),
    ("POST", run_path("noop", "open") + "/end-of-input", None),
    ("GET", "/healthz", None),
    ("DELETE", R, None),
]


async def test_every_endpoint_answers_200_with_a_body(populated: httpx.AsyncClient) -> None:
    for method, path, body in GOOD:
        resp = await populated.request(method, path, json=body)
        assert resp.status_code == 200, f"{method} {path}: {resp.text}"
        assert_honest(resp)


ERRORS: list[tuple[str, str, Any, int]] = [
    ("GET", "/processors/nope", None, 404),
    ("GET", "/processors/nope/runs", None, 404),
    ("GET", "/processors/nope/runs/r", None, 404),
    ("GET", "/processors/noop/runs/nope", None, 404),
    ("GET", "/processors/noop/runs/nope/config", None, 404),
    ("GET", "/processors/noop/runs/nope/data", None, 404),
    ("GET", R + "/data/input/nope", None, 404),
    ("GET", R + "/data/output/ok", None, 404),
    ("DELETE", "/processors/noop/runs/nope", None, 404),
    ("POST", "/processors/noop/runs/nope/data", {"ChunkID": "c"}, 404),
    ("POST", "/processors/noop/runs/nope/end-of-input", None, 404),
    ("POST", "/processors/nope/runs/r/config", {}, 404),
    ("GET", "/no/such/path", None, 404),
    ("PUT", R, None, 405),
    ("PUT", R + "/config", None, 405),
    ("DELETE", "/processors/noop", None, 405),
    ("POST", R + "/config", {"ExpectedData": {"NumChunks": 3}}, 409),
    ("POST", R + "/data", {"ChunkID": "ok", "RawData": [2]}, 409),
    ("POST", R + "/data", {"ChunkID": "new"}, 409),
    ("POST", R + "/data", {"ChunkID": ""}, 400),
    ("POST", run_path("noop", "x") + "/config", {"Processor": {"SleepMs": -1}}, 400),
]


@pytest.mark.parametrize(("method", "path", "body", "code"), ERRORS)
async def test_errors_have_their_code_and_a_value(
    populated: httpx.AsyncClient, method: str, path: str, body: Any, code: int
) -> None:
    resp = await populated.request(method, path, json=body)
    assert resp.status_code == code, resp.text
    assert_honest(resp)


NASTY_IDS = ["ü-ñ", "a b", "%00", "..", "a%2Fb", "x" * 5000, "%25", "'\";--", "\u202e", "null"]
NASTY_BODIES = [
    b"",
    b"\xff\xfe\xfa",
    b"\x00",
    b"{" * 100_000,
    b"[" * 100_000,
    b'{"ChunkID":"c","RawData":' + b"[" * 990 + b"]" * 990 + b"}",
    b'{"Processor":' + b"[" * 990 + b"]" * 990 + b"}",
    b'{"ExpectedData":{"NumChunks":1e400}}',
    b'{"ExpectedData":{"NumChunks":99999999999999999999999999}}',
    b'{"ExecutorConfig":{"MaxWorkers":1e400}}',
    b'{"ExecutorConfig":{"ChunkTimeout":1e400}}',
    b'{"ChunkID":"c","RawData":1e400}',
    b'{"ChunkID":"c","RawData":NaN}',
    b'{"ChunkID":"\\ud800"}',
    b'[{"ChunkID":"c"},',
    b"[" + b'{"ChunkID":"c"},' * 3 + b"1]",
    b'"' + b"\\" * 10 + b'"',
]


async def test_no_input_gets_a_500(populated: httpx.AsyncClient) -> None:
    for run_id in NASTY_IDS:
        base = f"/processors/noop/runs/{run_id}"
        for method, path in [
            ("POST", "/config"),
            ("GET", ""),
            ("GET", "/config"),
            ("POST", "/data"),
            ("GET", "/data"),
            ("GET", f"/data/input/{run_id}"),
            ("POST", "/end-of-input"),
            ("DELETE", ""),
        ]:
            resp = await populated.request(method, base + path, json={"ChunkID": run_id})
            assert_honest(resp)
    for body in NASTY_BODIES:
        for path in (R + "/data", run_path("noop", "open") + "/data", R + "/config"):
            resp = await populated.post(path, content=body)
            assert_honest(resp)
            assert resp.status_code in (400, 404, 409), (path, body[:50], resp.text)
    # And what was refused left the runs readable.
    for path in (R + "/data", run_path("noop", "open") + "/data", "/processors/noop/runs"):
        assert_honest(await populated.get(path))
