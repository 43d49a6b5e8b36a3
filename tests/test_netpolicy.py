"""The network policy: its rules (defaults, `--allow-net`, `--deny-net`, the own
address, addresses hiding an IPv4 address), downstream deliveries, and the check at
Configure. Processors' fetches are tested in tests/processors/test_network_policy.py.
No packet leaves loopback: decisions are made on addresses, not by connecting."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from _gates import add, configure
from conftest import live_server
from wiz_executor import (
    Configuration,
    Data,
    Executor,
    NetworkPolicy,
    NetworkRefused,
    Settings,
    create_app,
    netpolicy,
)
from wiz_executor.cli import app as cli_app

pytestmark = pytest.mark.anyio


def refused(policy: NetworkPolicy, address: str, port: int = 80) -> str:
    """The reason `address` is refused (the test fails if it is allowed)."""
    decision = policy.decide(ipaddress.ip_address(address), port)
    assert not decision.allowed, f"{address} was allowed by {decision.reason}"
    return decision.reason


def allowed(policy: NetworkPolicy, address: str, port: int = 80) -> bool:
    return policy.decide(ipaddress.ip_address(address), port).allowed


# -- the defaults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "loopback"),
        ("127.3.2.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ],
)
def test_refused_by_default(address: str, words: str) -> None:
    reason = refused(NetworkPolicy(), address)
    assert words in reason
    assert "refused by default" in reason
    assert "--allow-net" in reason


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "172.16.0.9", "192.168.1.1", "fd00::1", "93.184.216.34", "2606::1"]
)
def test_private_and_public_addresses_are_allowed_by_default(address: str) -> None:
    assert allowed(NetworkPolicy(), address)


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:7f00:1::1", "127.0.0.1"),  # 6to4
        ("2002:a9fe:a9fe::1", "169.254.169.254"),
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible (deprecated)
    ],
)
def test_ipv6_forms_of_a_refused_ipv4_address_are_refused(address: str, inner: str) -> None:
    reason = refused(NetworkPolicy(), address)
    assert inner in reason


def test_ipv6_forms_of_an_allowed_ipv4_address_are_allowed() -> None:
    assert allowed(NetworkPolicy(), "::ffff:10.0.0.1")
    assert allowed(NetworkPolicy(allow=["127.0.0.1/32"]), "::ffff:127.0.0.1")


def test_the_refusal_names_address_rule_and_flag() -> None:
    with pytest.raises(NetworkRefused) as caught:
        NetworkPolicy().check(ipaddress.ip_address("127.0.0.1"), 8080)
    assert caught.value.message == (
        "refused to connect to 127.0.0.1:8080 "
        "(loopback, refused by default; allow with --allow-net 127.0.0.1/32)"
    )
    with pytest.raises(NetworkRefused) as caught:
        NetworkPolicy().check(ipaddress.ip_address("::1"), 80, host="localhost")
    assert caught.value.message.startswith("refused to connect to [::1]:80 (localhost) (")
    assert "--allow-net ::1/128" in caught.value.message


# -- --allow-net and --deny-net: the most specific rule wins ------------------------------


def test_allow_net_opens_a_default_refusal_as_far_as_it_reaches() -> None:
    policy = NetworkPolicy(allow=["127.0.0.1/32"])
    assert allowed(policy, "127.0.0.1")
    assert "loopback" in refused(policy, "127.0.0.2")
    # The same prefix as the default rule: the operator's rule wins.
    assert allowed(NetworkPolicy(allow=["127.0.0.0/8"]), "127.9.9.9")
    assert allowed(NetworkPolicy(allow=["169.254.169.254"]), "169.254.169.254")


def test_deny_net_closes_an_allowed_range() -> None:
    policy = NetworkPolicy(deny=["10.0.0.0/8"])
    reason = refused(policy, "10.1.2.3")
    assert "refused by --deny-net 10.0.0.0/8" in reason
    assert "allow with --allow-net 10.1.2.3/32" in reason
    assert allowed(policy, "192.168.0.1")


def test_a_more_specific_allow_wins_over_a_wider_deny() -> None:
    policy = NetworkPolicy(allow=["10.1.0.0/16"], deny=["10.0.0.0/8"])
    assert allowed(policy, "10.1.2.3")
    assert not allowed(policy, "10.2.0.1")


def test_a_more_specific_deny_wins_over_a_wider_allow() -> None:
    policy = NetworkPolicy(allow=["127.0.0.0/8"], deny=["127.0.0.1/32"])
    assert allowed(policy, "127.0.0.2")
    reason = refused(policy, "127.0.0.1")
    assert "refused by --deny-net 127.0.0.1/32" in reason
    assert "remove" in reason  # no narrower --allow-net could beat a /32


def test_deny_wins_over_allow_of_the_same_network() -> None:
    policy = NetworkPolicy(allow=["10.0.0.0/8"], deny=["10.0.0.0/8"])
    assert not allowed(policy, "10.0.0.1")


def test_bad_cidrs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        NetworkPolicy(allow=["10.0.0.1/8"])
    with pytest.raises(ValueError, match="nonsense"):
        Settings(deny_net=("nonsense",))


def test_the_cli_takes_repeatable_flags_and_refuses_bad_ones(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["executor", "--allow-net", "not-a-cidr"])
    assert result.exit_code == 2
    assert "--allow-net" in result.output
    help_text = runner.invoke(cli_app, ["executor", "--help"], env={"COLUMNS": "200"}).output
    assert "--allow-net" in help_text
    assert "--deny-net" in help_text


def test_the_cli_passes_the_flags_and_the_listening_address_into_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from wiz_executor.cli import _serve

    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        _serve, "create_app", lambda settings: seen.setdefault("settings", settings)
    )
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: seen.update(kw))
    args = ["--allow-net", "127.0.0.1/32", "--allow-net", "::1", "--deny-net", "10.0.0.0/8"]
    args += ["--port", "127.0.0.2:9123", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(cli_app, ["executor", *args])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert settings.allow_net == ("127.0.0.1/32", "::1")
    assert settings.deny_net == ("10.0.0.0/8",)
    assert settings.listen == ("127.0.0.2", 9123)


# -- the executor's own address -----------------------------------------------------------


def test_the_own_address_is_refused_even_when_its_network_is_allowed() -> None:
    policy = NetworkPolicy(allow=["0.0.0.0/0", "127.0.0.0/8"], own=[("127.0.0.1", 8080)])
    reason = refused(policy, "127.0.0.1", 8080)
    assert "own address" in reason
    assert allowed(policy, "127.0.0.1", 8081)
    assert "own address" in refused(policy, "::ffff:127.0.0.1", 8080)


def test_an_executor_listening_everywhere_refuses_its_local_addresses() -> None:
    policy = NetworkPolicy(allow=["127.0.0.0/8"], own=[("0.0.0.0", 9000)])
    assert "own address" in refused(policy, "127.0.0.1", 9000)
    assert "own address" in refused(policy, "127.0.0.5", 9000)
    assert allowed(policy, "127.0.0.1", 9001)
    assert allowed(policy, "10.255.255.1", 9000)  # not an address of this machine


def test_listening_on_learns_the_bound_address() -> None:
    policy = NetworkPolicy(allow=["127.0.0.0/8"])
    assert allowed(policy, "127.0.0.1", 4321)
    policy.listening_on([("127.0.0.1", 4321)])
    assert "own address" in refused(policy, "127.0.0.1", 4321)


# -- downstream -----------------------------------------------------------------------------


def test_downstream_allows_loopback_and_the_own_address_by_default() -> None:
    policy = NetworkPolicy(own=[("127.0.0.1", 8080)]).for_downstream()
    assert allowed(policy, "127.0.0.1", 8080)
    assert allowed(policy, "::1", 8080)
    assert "link-local" in refused(policy, "169.254.169.254")
    denied = NetworkPolicy(deny=["127.0.0.0/8"]).for_downstream()
    assert "--deny-net 127.0.0.0/8" in refused(denied, "127.0.0.1", 8080)


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "wiz-data", downstream_backoff=0.01, **extra)


async def test_delivery_to_loopback_works_by_default(tmp_path: Path) -> None:
    """The original manager's pipelines: every downstream is localhost:PORT."""
    async with (
        live_server(settings_for(tmp_path)) as (url, executor),
        httpx.AsyncClient(base_url=url) as http,
    ):
        here = url.removeprefix("http://").replace("127.0.0.1", "localhost")
        await configure(http, "noop", "sink", num_chunks=1)
        loc = {"Hostname": here, "ProcID": "noop", "RunID": "sink"}
        await configure(
            http, "noop", "src", num_chunks=1, SendDownstream=True, DownstreamLocations=[loc]
        )
        assert (await add(http, "noop", "src", {"ChunkID": "c"})).status_code == 200
        run = await executor.wait("noop", "sink", timeout=10)
        assert run.state.value == "SUCCEEDED"


async def test_delivery_refused_by_deny_net_fails_with_the_message(tmp_path: Path) -> None:
    """Configured without the route's check (the library's own `configure`), so the
    refusal happens where the connection is made."""
    async with live_server(settings_for(tmp_path)) as (url, _):
        port = httpx.URL(url).port
        settings = settings_for(tmp_path / "sender", deny_net=("127.0.0.0/8",))
        async with Executor(settings) as executor:
            config: dict[str, Any] = {
                "ExpectedData": {"NumChunks": 1},
                "ExecutorConfig": {
                    "SendDownstream": True,
                    "DownstreamLocations": [
                        {"Hostname": f"127.0.0.1:{port}", "ProcID": "noop", "RunID": "sink"}
                    ],
                },
            }
            executor.configure("noop", "src", Configuration.model_validate(config))
            executor.add_data("noop", "src", Data(ChunkID="c"))
            run = await executor.wait("noop", "src", timeout=10)
            assert run.state.value == "ERRORED"
            output = run.output("c-out")
            error = output.delivery_error or ""
            assert f"refused to connect to 127.0.0.1:{port}" in error
            assert "--deny-net 127.0.0.0/8" in error


# -- Configure ------------------------------------------------------------------------------


async def _configure_status(settings: Settings, hostname: str) -> httpx.Response:
    async with Executor(settings) as executor:
        transport = httpx.ASGITransport(app=create_app(executor=executor))
        async with httpx.AsyncClient(transport=transport, base_url="http://executor") as http:
            return await http.post(
                "/processors/noop/runs/src/config",
                json={
                    "ExecutorConfig": {
                        "SendDownstream": True,
                        "DownstreamLocations": [
                            {"Hostname": hostname, "ProcID": "noop", "RunID": "sink"}
                        ],
                    }
                },
            )


async def test_configure_refuses_a_downstream_the_policy_refuses(tmp_path: Path) -> None:
    resp = await _configure_status(settings_for(tmp_path, deny_net=("127.0.0.0/8",)), "127.0.0.1:9")
    assert resp.status_code == 400, resp.text
    message = resp.json()["value"]
    assert "DownstreamLocations[0]" in message
    assert "refused to connect to 127.0.0.1:9" in message
    assert "--deny-net 127.0.0.0/8" in message
    assert "--allow-net" in message


async def test_configure_refuses_a_link_local_downstream_by_default(tmp_path: Path) -> None:
    resp = await _configure_status(settings_for(tmp_path), "169.254.169.254")
    assert resp.status_code == 400, resp.text
    assert "link-local" in resp.json()["value"]


async def test_configure_resolves_the_downstream_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(host: str, port: int) -> list[Any]:
        assert host == "sink.wiz.test"
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(netpolicy, "resolve", resolve)
    settings = settings_for(tmp_path, deny_net=("127.0.0.0/8",))
    resp = await _configure_status(settings, "http://sink.wiz.test:8080/")
    assert resp.status_code == 400, resp.text
    assert "sink.wiz.test" in resp.json()["value"]


async def test_configure_accepts_a_loopback_downstream_by_default(tmp_path: Path) -> None:
    resp = await _configure_status(settings_for(tmp_path), "localhost:8080")
    assert resp.status_code == 200, resp.text


async def test_the_executor_learns_its_own_address_when_it_serves(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, allow_net=("127.0.0.1/32",))
    async with live_server(settings) as (url, executor):
        port = httpx.URL(url).port
        assert port is not None
        loopback = ipaddress.ip_address("127.0.0.1")
        assert "own address" in executor.network.decide(loopback, port).reason
        assert not executor.network.decide(loopback, port).allowed
        assert executor.network.decide(loopback, port + 1).allowed


# -- TLS through the transport ------------------------------------------------------------


async def test_https_goes_to_the_checked_address_and_verifies_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection goes to the address the policy checked, while TLS still sends the
    name (SNI) and checks the certificate against it: a certificate for another name
    fails, although the address is the same."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("files.wiz.test").configure_cert(server_context)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = str(self.headers["Host"]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        names = {"files.wiz.test": "127.0.0.1", "other.wiz.test": "127.0.0.1"}

        async def resolve(host: str, port: int) -> list[Any]:
            return [ipaddress.ip_address(names[host])]

        monkeypatch.setattr(netpolicy, "resolve", resolve)
        # A proxy from the environment would connect on its own: it is never used.
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, "http://127.0.0.1:1")
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        policy = NetworkPolicy(allow=["127.0.0.1/32"])
        async with netpolicy.guarded_client(policy, client_context) as http:
            resp = await http.get(f"https://files.wiz.test:{port}/")
            assert resp.status_code == 200
            assert resp.text == f"files.wiz.test:{port}"
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await http.get(f"https://other.wiz.test:{port}/")
        async with netpolicy.guarded_client(NetworkPolicy(), client_context) as http:
            with pytest.raises(NetworkRefused, match="loopback"):
                await http.get(f"https://files.wiz.test:{port}/")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


async def test_a_host_name_idna_refuses_is_no_such_name_not_a_crash() -> None:
    """A label of 64 characters passes httpx.URL, but getaddrinfo's IDNA encoding raises
    UnicodeError (before any lookup): resolving must say "no such name" (an OSError the
    callers handle), not let a ValueError become a 500 at Configure."""
    from conftest import _system_resolve

    with pytest.raises(OSError, match="not a valid host name"):
        await _system_resolve("a" * 64 + ".example", 80)
