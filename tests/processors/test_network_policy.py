"""The network policy seen from the processors that fetch: `get`, `scrape` and `git`.

Each test is an attack from issue #10 (or its legitimate twin). No test sends a packet
anywhere but loopback: names are made to resolve through the policy module's `resolve`
hook (never through DNS), and the link-local test forbids every connection attempt.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from conftest import live_server, wait_run_done
from processors._servers import FixtureHTTP, GitDaemon
from processors.conftest import Fixtures, Repos, failed_with, run_one
from wiz_executor import Executor, Settings, create_app, netpolicy

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An executor with these settings, and a client speaking to its app (no sockets)."""
    async with Executor(settings) as executor:
        transport = httpx.ASGITransport(app=create_app(executor=executor))
        async with httpx.AsyncClient(transport=transport, base_url="http://executor") as c:
            yield c


def default_policy(settings: Settings) -> Settings:
    """The processors' settings without the tests' `--allow-net 127.0.0.1/32`."""
    return dataclasses.replace(settings, allow_net=())


def fake_resolver(names: dict[str, str]) -> Callable[[str, int], Any]:
    """A `resolve` hook answering for `names`, and refusing to look up anything else."""

    async def resolve(host: str, port: int) -> list[Any]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, f"the test does not know {host}")
        return [ipaddress.ip_address(names[host])]

    return resolve


def output_text(out: dict[str, Any]) -> str:
    """The file a `get` output refers to."""
    return Path(out["FilesystemReference"]["Location"]).read_text()


# -- get: the executor's own API ------------------------------------------------------


@pytest.mark.parametrize("allow_net", ["", "127.0.0.1/32"])
async def test_get_cannot_delete_a_run_through_the_executors_own_api(
    settings: Settings, allow_net: str
) -> None:
    """SSRF: `get` with `Method: DELETE` on the executor's own address. Refused even when
    loopback is allowed: the own address is a rule of its own."""
    settings = dataclasses.replace(settings, allow_net=(allow_net,) if allow_net else ())
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/processors/noop/runs/victim/config", json={})
        assert resp.status_code == 200, resp.text
        port = httpx.URL(url).port
        resp = await http.post(
            "/processors/get/runs/attack/config",
            json={
                "ExpectedData": {"NumChunks": 1},
                "Processor": {
                    "URL": f"{url}/processors/noop/runs/victim",
                    "Method": "DELETE",
                    "Retries": 0,
                },
            },
        )
        assert resp.status_code == 200, resp.text
        resp = await http.post("/processors/get/runs/attack/data", json={"ChunkID": "c"})
        assert resp.status_code == 200, resp.text
        info = await wait_run_done(http, "get", "attack")
        assert info["CurrentState"] == "ERRORED"
        out = (await http.get("/processors/get/runs/attack/data")).json()["Out"][0]
        failed_with(out, f"refused to connect to 127.0.0.1:{port}", "own")
        assert (await http.get("/processors/noop/runs/victim")).status_code == 200


# -- scrape: another loopback service ---------------------------------------------------


async def test_scrape_of_another_loopback_service_is_refused_by_default(
    settings: Settings, web: FixtureHTTP
) -> None:
    before = len(web.seen("/files/page.html"))
    async with client_for(default_policy(settings)) as client:
        out = await run_one(
            client,
            "scrape",
            {
                "config": {"Sites": [web.url("/files/page.html")], "Retries": 0},
                "scraper": {"t": {"selector": "h1", "values": {"text": "text"}}},
            },
        )
    failed_with(
        out,
        f"refused to connect to 127.0.0.1:{web.port}",
        "loopback, refused by default",
        "allow with --allow-net 127.0.0.1/32",
    )
    assert len(web.seen("/files/page.html")) == before  # nothing reached the server


async def test_scrape_of_a_loopback_service_works_when_allowed(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    out = await run_one(
        client,
        "scrape",
        {
            "config": {"Sites": [web.url("/files/page.html")]},
            "scraper": {"t": {"selector": "h1", "values": {"text": "text"}}},
        },
    )
    assert out["State"] == "SUCCEEDED", out
    assert out["RawData"] == {"t": [{"text": "Hello"}]}


# -- redirects ----------------------------------------------------------------------------


async def test_a_redirect_to_a_refused_address_is_refused(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    """The fixture server (127.0.0.1, allowed) redirects to 127.0.0.2 (loopback, not in
    the tests' --allow-net 127.0.0.1/32): the second hop is checked too."""
    target = f"http://127.0.0.2:{web.port}/files/small.txt"
    url = web.url(f"/goto?to={target}")
    out = await run_one(client, "get", {"URL": url, "Retries": 0})
    failed_with(out, f"refused to connect to 127.0.0.2:{web.port}", "loopback")


async def test_scrape_follows_no_redirect_to_a_refused_address(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    target = f"http://127.0.0.2:{web.port}/files/page.html"
    out = await run_one(
        client,
        "scrape",
        {
            "config": {"Sites": [web.url(f"/goto?to={target}")], "Retries": 0},
            "scraper": {"t": {"selector": "h1", "values": {"text": "text"}}},
        },
    )
    failed_with(out, f"refused to connect to 127.0.0.2:{web.port}")


# -- names, resolved once -------------------------------------------------------------------


async def test_a_name_resolving_to_loopback_is_refused(
    settings: Settings, web: FixtureHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netpolicy, "resolve", fake_resolver({"rebind.wiz.test": "127.0.0.1"}))
    async with client_for(default_policy(settings)) as client:
        out = await run_one(
            client, "get", {"URL": f"http://rebind.wiz.test:{web.port}/files/small.txt"}
        )
    failed_with(out, f"refused to connect to 127.0.0.1:{web.port}", "rebind.wiz.test", "loopback")


async def test_the_connection_goes_to_the_address_that_was_checked(
    client: httpx.AsyncClient, web: FixtureHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second lookup: the name is resolved once, by the hook, and the connection goes
    to that address while the Host header keeps the name."""
    monkeypatch.setattr(netpolicy, "resolve", fake_resolver({"files.wiz.test": "127.0.0.1"}))
    out = await run_one(client, "get", {"URL": f"http://files.wiz.test:{web.port}/echo"})
    assert out["State"] == "SUCCEEDED", out
    echo = output_text(out)
    assert f'"host": "files.wiz.test:{web.port}"' in echo


async def test_a_pinned_address_is_used_even_when_the_system_would_answer_otherwise(
    settings: Settings, web: FixtureHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`localhost` is 127.0.0.1 to the system; the hook says 127.0.0.2, where nothing
    listens. The fetch fails to connect: it went where the policy looked."""
    monkeypatch.setattr(netpolicy, "resolve", fake_resolver({"localhost": "127.0.0.2"}))
    settings = dataclasses.replace(settings, allow_net=("127.0.0.0/8",))
    async with client_for(settings) as client:
        out = await run_one(
            client, "get", {"URL": f"http://localhost:{web.port}/files/small.txt", "Retries": 0}
        )
    failed_with(out, f"could not connect to localhost:{web.port}", "connection refused")


# -- link-local: refused before any packet --------------------------------------------------


async def test_link_local_metadata_is_refused_without_a_connection_attempt(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Any] = []

    async def no_connect(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        attempts.append((host, port))
        raise httpcore.ConnectError("the test forbids connecting")

    def no_socket_connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("the test forbids connecting")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", no_connect)
    monkeypatch.setattr(socket.socket, "connect", no_socket_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", no_socket_connect)
    out = await run_one(
        client, "get", {"URL": "http://169.254.169.254/latest/meta-data/", "Retries": 0}
    )
    failed_with(
        out,
        "refused to connect to 169.254.169.254:80",
        "link-local",
        "allow with --allow-net 169.254.169.254/32",
    )
    assert attempts == []


# -- git ----------------------------------------------------------------------------------


async def test_git_over_http_to_a_refused_address(settings: Settings, web: FixtureHTTP) -> None:
    before = len(web.seen("/git/"))
    async with client_for(default_policy(settings)) as client:
        out = await run_one(client, "git", {"URL": web.url("/git/repo.git")})
    failed_with(out, f"refused to connect to 127.0.0.1:{web.port}", "--allow-net 127.0.0.1/32")
    assert len(web.seen("/git/")) == before


async def test_git_protocol_to_a_refused_address(settings: Settings, git_daemon: GitDaemon) -> None:
    async with client_for(default_policy(settings)) as client:
        out = await run_one(client, "git", {"URL": git_daemon.url("repo.git")})
    failed_with(out, f"refused to connect to 127.0.0.1:{git_daemon.port}", "loopback")


async def test_git_over_http_connects_to_the_checked_address(
    client: httpx.AsyncClient,
    web: FixtureHTTP,
    repos: Repos,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """git is pinned (http.curloptResolve) to the address the policy checked: a name
    only the hook knows is cloned from, and the server sees the name as Host."""
    monkeypatch.setattr(netpolicy, "resolve", fake_resolver({"git.wiz.test": "127.0.0.1"}))
    before = len(web.seen("/git/repo.git/info/refs"))
    url = f"http://git.wiz.test:{web.port}/git/repo.git"
    out = await run_one(client, "git", {"URL": url, "Depth": 1})
    assert out["State"] == "SUCCEEDED", out
    assert out["RawData"]["Commit"] == repos.main_commits[-1]
    seen = web.seen("/git/repo.git/info/refs")[before:]
    assert seen
    assert seen[0][2].get("Host") == f"git.wiz.test:{web.port}"


async def test_git_over_http_goes_where_the_policy_looked(
    settings: Settings, web: FixtureHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook says localhost is 127.0.0.2 (nothing listens there); git, pinned to it,
    cannot connect, where its own lookup (127.0.0.1) would have cloned."""
    monkeypatch.setattr(netpolicy, "resolve", fake_resolver({"localhost": "127.0.0.2"}))
    settings = dataclasses.replace(settings, allow_net=("127.0.0.0/8",))
    async with client_for(settings) as client:
        out = await run_one(client, "git", {"URL": f"http://localhost:{web.port}/git/repo.git"})
    failed_with(out, "git clone", f"Failed to connect to localhost port {web.port}")


async def test_git_protocol_to_a_name_clones_from_the_checked_address(
    client: httpx.AsyncClient,
    git_daemon: GitDaemon,
    repos: Repos,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netpolicy, "resolve", fake_resolver({"daemon.wiz.test": "127.0.0.1"}))
    url = f"git://daemon.wiz.test:{git_daemon.port}/repo.git"
    out = await run_one(client, "git", {"URL": url, "ReferenceName": "v1"})
    assert out["State"] == "SUCCEEDED", out
    assert out["RawData"]["URL"] == url
    assert out["RawData"]["Commit"] == repos.tag_v1


async def test_fixtures_still_reachable_with_the_tests_allow_net(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures
) -> None:
    out = await run_one(client, "get", {"URL": web.url("/files/small.txt")})
    assert out["State"] == "SUCCEEDED", out
    assert output_text(out).encode() == fixtures.files["small.txt"]


async def test_git_pins_names_and_leaves_addresses_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from wiz_executor.processors.git import _pinned

    monkeypatch.setattr(netpolicy, "resolve", fake_resolver({"git.wiz.test": "127.0.0.1"}))
    policy = netpolicy.NetworkPolicy(allow=["127.0.0.1/32", "::1/128"])
    source, pins = await _pinned("https://git.wiz.test/r.git", policy)
    assert source == "https://git.wiz.test/r.git"
    assert pins == (
        "-c",
        "http.curloptResolve=git.wiz.test:443:127.0.0.1",
        "-c",
        "http.followRedirects=false",
    )
    source, pins = await _pinned("http://[::1]:8080/r.git", policy)
    assert pins == ("-c", "http.followRedirects=false")
    source, pins = await _pinned("git://git.wiz.test/r.git", policy)
    assert (source, pins) == ("git://127.0.0.1:9418/r.git", ())
    with pytest.raises(netpolicy.NetworkRefused, match=r"\[::1\]:9418"):
        await _pinned("git://[::1]/r.git", netpolicy.NetworkPolicy())
