"""Shared fixtures: an executor, the real ASGI app in front of it, and live servers.

Every test runs on asyncio through anyio's pytest plugin and has a timeout (pyproject).
Nothing here sleeps to wait: helpers poll a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from wiz_executor import Executor, Settings, create_app, netpolicy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if asyncio.iscoroutinefunction(getattr(item, "function", None)):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_system_resolve = netpolicy.resolve


async def resolve_without_dns(host: str, port: int) -> list[Any]:
    """The tests' name resolution for outbound connections: addresses are themselves,
    `localhost` is what the system says (from /etc/hosts), and any other name fails at
    once, so no test (a fuzzed downstream Hostname, say) sends a DNS query off the
    machine. Tests that need a name replace `netpolicy.resolve` themselves."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    if host.lower().rstrip(".") == "localhost":  # /etc/hosts: the system's own answer
        return await _system_resolve(host, port)
    raise socket.gaierror(socket.EAI_NONAME, f"the tests resolve no name but localhost ({host})")


@pytest.fixture(scope="session", autouse=True)
def _no_dns() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(netpolicy, "resolve", resolve_without_dns)
        yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Durable, as shipped: the journal in the test's folder, beside (not inside) the
    data directory, whose files some tests list."""
    return Settings(
        data_dir=tmp_path / "wiz-data",
        db_path=tmp_path / "wiz.db",
        downstream_backoff=0.01,
        shutdown_grace=5,
        allow_net=("127.0.0.1/32",),  # the tests' servers are on loopback
    )


@pytest.fixture
async def executor(settings: Settings) -> AsyncIterator[Executor]:
    async with Executor(settings) as ex:
        yield ex


@pytest.fixture
async def client(executor: Executor) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the real ASGI app (fast path included), no sockets."""
    app = create_app(executor=executor)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://executor") as c:
        yield c


async def wait_for(
    condition: Callable[[], Awaitable[bool] | bool],
    timeout: float = 10.0,  # noqa: ASYNC109 (a polling deadline, reported as a test failure)
    what: str = "",
) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.005)  # noqa: sleep-ok (poll interval, not a wait for an event)


async def wait_run_done(
    client: httpx.AsyncClient,
    proc: str,
    run: str,
    timeout: float = 10.0,  # noqa: ASYNC109 (passed on to wait_for's polling deadline)
) -> dict[str, Any]:
    """Poll GetRun until the run is SUCCEEDED or ERRORED; return its JSON."""
    body: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal body
        resp = await client.get(f"/processors/{proc}/runs/{run}")
        body = resp.json()
        return body.get("CurrentState") in ("SUCCEEDED", "ERRORED")

    await wait_for(done, timeout, f"run {proc}/{run} to finish")
    return body


@asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[tuple[str, Executor]]:
    """A real uvicorn server on 127.0.0.1 and an ephemeral port, in this event loop.

    Yields its base URL and its executor; stops it (gracefully) on exit. The executor
    knows the address it serves on (`Settings.listen`), as under `wiz executor`.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(dataclasses.replace(settings, listen=("127.0.0.1", port)))
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: server.started or task.done(), 10, "uvicorn to start")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}", app.state.executor
    finally:
        server.should_exit = True
        await task
        sock.close()
