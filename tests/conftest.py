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
        if _uses_ray(item):  # the first one starts the session's Ray cluster
            item.add_marker(pytest.mark.timeout(180))


def _uses_ray(item: Any) -> bool:
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return "ray_cluster" in getattr(item, "fixturenames", ()) or any(
        value == "RAY" or (isinstance(value, list) and "RAY" in value) for value in params
    )


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
    timeout: float | None = None,  # noqa: ASYNC109 (passed on to wait_for's polling deadline)
) -> dict[str, Any]:
    """Poll GetRun until the run is SUCCEEDED or ERRORED; return its JSON. The default
    deadline is 10 s, 60 s for a RAY run (its actors are processes that start first)."""
    body: dict[str, Any] = {}
    if timeout is None:
        config = (await client.get(f"/processors/{proc}/runs/{run}/config")).json()
        ray = (config.get("ExecutorConfig") or {}).get("WorkModel") == "RAY"
        timeout = 60.0 if ray else 10.0

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


# -- Ray: one two-node cluster on 127.0.0.1 per test session, started by the first test
# that needs it (a RAY-parametrised test, or one asking for `ray_cluster`).

RAY_ENV = {
    # Ray names the machine's interface address as a node's IP unless told this.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


LOOPBACK = {"node_ip_address": "127.0.0.1"}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A head node (4 CPUs) and a worker node (2 CPUs, the custom resource `gpu_like`),
    both on 127.0.0.1, this process connected to it; shut down (every Ray process
    ended) at the end of the session. Processors defined in test modules are importable
    on the workers through PYTHONPATH (the tests folder), as a user's own processors
    must be on theirs."""
    tests = Path(__file__).parent
    with pytest.MonkeyPatch.context() as patch:
        for name, value in RAY_ENV.items():  # (read by Ray when it is imported)
            patch.setenv(name, value)
        patch.setenv("PYTHONPATH", f"{tests}:{tests.parent / 'src'}")
        ray = pytest.importorskip("ray")
        from ray.cluster_utils import Cluster

        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 4, "include_dashboard": False, **LOOPBACK},
        )
        try:
            cluster.add_node(num_cpus=2, resources={"gpu_like": 1}, **LOOPBACK)
            ray.init(address=cluster.address, log_to_driver=False)
            cluster.wait_for_nodes()
            addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
            assert addresses == {"127.0.0.1"}, f"Ray nodes off loopback: {addresses}"
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(autouse=True)
def _ray_when_needed(request: pytest.FixtureRequest) -> None:
    """Start the session's Ray cluster for a test run with the RAY work model."""
    if _uses_ray(request.node):
        request.getfixturevalue("ray_cluster")
