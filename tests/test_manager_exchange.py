"""The original Go manager drives the executor unchanged (issue #8's "done when").

`tests/data/wire/manager-pipeline.md` writes out what the manager does for its example
pipeline, and `manager-pipeline.json` holds the same six requests: it starts
`wiz executor --port :PORT`, configures five runs of noop (leaves with
`"SendDownstream": true, "DownstreamLocations": []`, the first with
`"Processor": {"test": "test"}`), all sending to `localhost:PORT`, then adds one chunk.
Here the real command is started the same way, as a subprocess, and the exchange is
replayed in order, each body written compactly as Go's encoder writes it, with fresh IDs
and the test's port.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _wiz_process import free_port, wiz_command
from conftest import live_server, wait_for
from wiz_executor import Settings

pytestmark = pytest.mark.anyio

EXCHANGE = Path(__file__).resolve().parent / "data" / "wire" / "manager-pipeline.json"
RUNS = ("R_DL", "R_DEC", "R_TP", "R_TP2", "R_OUT")


def replayed(port: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The manager's requests with fresh run and chunk IDs (the manager makes up KSUIDs)
    and `localhost:PORT` as the executor, and the ID each placeholder became."""
    text = EXCHANGE.read_text(encoding="utf-8")
    ids = {name: f"{name.lower()}-{uuid.uuid4().hex[:12]}" for name in (*RUNS, "C1OUT", "C1")}
    # Longest first: R_TP2 before R_TP, C1OUT before C1.
    for name in sorted(ids, key=len, reverse=True):
        text = text.replace(f'"{name}"', f'"{ids[name]}"').replace(f"/{name}/", f"/{ids[name]}/")
    text = text.replace("{HOST}", f"localhost:{port}")
    requests: list[dict[str, Any]] = json.loads(text)["requests"]
    return requests, ids


@pytest.fixture
async def wiz_executor(tmp_path: Path) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    """`wiz executor --port :PORT`, exactly the manager's command line, stopped after."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *wiz_command(),
        "executor",
        "--port",
        f":{port}",
        cwd=tmp_path,  # its default ./wiz-data lands in the test's folder
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield port, proc
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_managers_pipeline_runs_end_to_end(
    wiz_executor: tuple[int, asyncio.subprocess.Process],
) -> None:
    port, proc = wiz_executor
    requests, ids = replayed(port)
    async with httpx.AsyncClient(base_url=f"http://localhost:{port}") as http:

        async def up() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                assert proc.returncode is None, "wiz executor --port :PORT exited"
                return False

        await wait_for(up, timeout=30, what="wiz executor --port :PORT to serve")

        for request in requests:
            resp = await http.request(
                request["method"],
                request["path"],
                content=json.dumps(request["body"], separators=(",", ":")).encode(),
                headers=request["headers"],
            )
            # The manager never checks; a correct executor answers 200 to every one.
            assert resp.status_code == 200, (request["name"], resp.text)
        assert resp.json() == {"Accepted": 1, "Duplicates": 0}  # the AddData answer

        async def run(name: str) -> dict[str, Any]:
            got: dict[str, Any] = (await http.get(f"/processors/noop/runs/{ids[name]}")).json()
            return got

        async def all_finished() -> bool:
            states = [(await run(name))["CurrentState"] for name in RUNS]
            return all(state in ("SUCCEEDED", "ERRORED") for state in states)

        await wait_for(all_finished, timeout=30, what="every run of the pipeline to finish")
        for name in RUNS:
            assert (await run(name))["CurrentState"] == "SUCCEEDED", await run(name)
        assert (await run("R_DL"))["Warnings"] == ["unknown field Processor.test ignored"]

        async def inputs(name: str) -> list[dict[str, Any]]:
            data = (await http.get(f"/processors/noop/runs/{ids[name]}/data")).json()
            held: list[dict[str, Any]] = data["In"]
            return held

        raw = requests[-1]["body"]["RawData"]
        # download holds the manager's chunk; its output C1OUT reaches its three children.
        expected = {
            "R_DL": ids["C1"],
            "R_DEC": ids["C1OUT"],
            "R_TP": ids["C1OUT"],
            "R_TP2": ids["C1OUT"],
            # decompress names its output after itself; that is what output receives.
            "R_OUT": f"{ids['C1OUT']}-{ids['R_DEC']}",
        }
        for name, chunk_id in expected.items():
            held = await inputs(name)
            assert [(c["ChunkID"], c["State"], c["RawData"]) for c in held] == [
                (chunk_id, "SUCCEEDED", raw)
            ], name


async def test_delivery_to_localhost_falls_back_from_ipv6_to_the_loopback_bind(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor binds 127.0.0.1, and `localhost` may resolve to ::1 first: the
    downstream sender (httpx over anyio, which tries every address) still delivers."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[Any] = []

    async def ipv6_first(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        found = list(await real(host, port, *args, **kwargs))
        if host in ("localhost", b"localhost"):
            asked.append(host)
            found.insert(0, (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)))
        return found

    monkeypatch.setattr(loop, "getaddrinfo", ipv6_first)
    async with live_server(settings) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=url) as http:
            sink = {"ExpectedData": {"NumChunks": 1}}
            source = {
                "ExpectedData": {"NumChunks": 1},
                "ExecutorConfig": {
                    "SendDownstream": True,
                    "DownstreamLocations": [
                        {"Hostname": f"localhost:{port}", "ProcID": "noop", "RunID": "sink"}
                    ],
                },
            }
            assert (await http.post("/processors/noop/runs/sink/config", json=sink)).is_success
            assert (await http.post("/processors/noop/runs/src/config", json=source)).is_success
            await http.post("/processors/noop/runs/src/data", json={"ChunkID": "c", "RawData": 1})

            async def delivered() -> bool:
                run = (await http.get("/processors/noop/runs/sink")).json()
                return bool(run["CurrentState"] == "SUCCEEDED")

            await wait_for(delivered, timeout=20, what="the output to reach localhost")
            src = (await http.get("/processors/noop/runs/src")).json()
            assert src["CurrentState"] == "SUCCEEDED"
    assert asked, "localhost was never resolved through the patched resolver"
