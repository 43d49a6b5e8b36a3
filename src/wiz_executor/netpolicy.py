"""The network policy: which addresses the executor's outbound connections may reach.

Everything the executor fetches on a run's behalf (`get`, `scrape`, `git` over
http/https/git://, downstream deliveries) goes through this module, so a run cannot make
the executor reach what its operator did not mean to expose: the executor's own API, other
services on loopback, cloud metadata on link-local addresses.

The check is made where the connection is made, not where the URL is parsed: the
httpx transport below (`guarded_client`) resolves a host name once, decides on every
address it got, and connects to an address it allowed, while TLS still verifies the
certificate for the host name (SNI) and the Host header keeps the name. There is no
second lookup a DNS server could answer differently (DNS rebinding), and every redirect
is a new request, so a new check. `git` runs as a program: it is pinned to a checked
address (see `processors/git.py`).

The rules: each is a network with allow or refuse. Of the rules that contain an
address, the most specific (longest prefix) decides; at equal length an operator's rule
(`--allow-net`, `--deny-net`) beats a default, and a refusal beats an allowance. By
default loopback, link-local, unspecified, multicast and broadcast addresses are
refused, private ranges and everything else allowed. An IPv6 address that carries an
IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`,
IPv4-compatible `::a.b.c.d`, Teredo) must be allowed both as itself and as the IPv4
address it carries. Apart from the rules, the executor's own API address (the
address:port it serves on) is refused to processors whatever `--allow-net` says.
Downstream deliveries use `for_downstream()`: loopback and the own address allowed by
default, since the original manager sends every delivery to `localhost:8080`.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
import ssl
import sys
import typing
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
import httpcore
import httpx

from .errors import NetworkRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_FLAG = "--allow-net"
DENY_FLAG = "--deny-net"


@dataclass(frozen=True, slots=True)
class Rule:
    """One network and what happens to addresses in it."""

    network: Network
    allow: bool
    label: str
    """What the network is ("loopback"), for messages."""
    flag: str | None = None
    """The flag that made the rule (`--allow-net`, `--deny-net`); None for a default."""

    def key(self) -> tuple[int, bool, bool]:
        """Higher wins: the longest prefix, then an operator's rule, then a refusal."""
        return (self.network.prefixlen, self.flag is not None, not self.allow)


def _net(text: str) -> Network:
    return ipaddress.ip_network(text)


_DEFAULT_REFUSED: tuple[tuple[str, str], ...] = (
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("fe80::/10", "link-local"),
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("255.255.255.255/32", "broadcast"),
)
_LOOPBACK = frozenset({"127.0.0.0/8", "::1/128"})
_DEFAULT_ALLOWED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/0", "public"),
    ("::/0", "public"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("fc00::/7", "private (unique local)"),
)


def default_rules(downstream: bool = False) -> tuple[Rule, ...]:
    """The rules before any flag; for downstream, loopback is allowed."""
    rules = [Rule(_net(n), True, label) for n, label in _DEFAULT_ALLOWED]
    for n, label in _DEFAULT_REFUSED:
        if downstream and n in _LOOPBACK:
            rules.append(Rule(_net(n), True, f"{label}, allowed by default for deliveries"))
        else:
            rules.append(Rule(_net(n), False, label))
    return tuple(rules)


def parse_cidr(text: str | Network) -> Network:
    """A network from `--allow-net`/`--deny-net`: `10.0.0.0/8`, `::1/128`, or a bare
    address (one host). Host bits set (`10.0.0.1/8`) are refused, as a likely typo."""
    if isinstance(text, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return text
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not a network: give CIDR notation such as 10.0.0.0/8, "
            f"192.168.1.7/32 or fd00::/8 ({exc})"
        ) from None


_EMBEDDING: tuple[Network, ...] = tuple(
    _net(n) for n in ("::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)
_TEREDO = _net("2001::/32")
_SIX_TO_FOUR = _net("2002::/16")


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and may reach through a translator)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    if int(address) <= 1:  # :: and ::1 are themselves, not IPv4-compatible addresses
        return []
    inner: list[ipaddress.IPv4Address] = []
    if address in _SIX_TO_FOUR and address.sixtofour is not None:
        inner.append(address.sixtofour)
    if address in _TEREDO and address.teredo is not None:
        inner.extend(address.teredo)
    if any(address in net for net in _EMBEDDING):
        inner.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return inner


def show(address: Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy said about one address and port, and why."""

    address: Address
    port: int
    allowed: bool
    reason: str
    """The rule that decided, and (when refused) what would allow it."""

    def refusal(self, host: str | None = None) -> NetworkRefused:
        name = f" ({host})" if host and host != str(self.address) else ""
        return NetworkRefused(
            f"refused to connect to {show(self.address, self.port)}{name} ({self.reason})",
            str(self.address),
            self.port,
        )


class NetworkPolicy:
    """Allow and refuse lists of networks, plus the executor's own address.

    `decide` is pure; `resolve_checked` resolves a host once and returns the addresses
    that may be connected to. One instance serves every outbound connection of an
    executor's processors; `for_downstream()` makes the deliveries' one.
    """

    def __init__(
        self,
        allow: Iterable[str | Network] = (),
        deny: Iterable[str | Network] = (),
        *,
        own: Iterable[tuple[str, int]] = (),
        downstream: bool = False,
    ) -> None:
        self.allow = tuple(parse_cidr(n) for n in allow)
        self.deny = tuple(parse_cidr(n) for n in deny)
        self.downstream = downstream
        self.rules = (
            default_rules(downstream)
            + tuple(Rule(n, True, f"in {n}", ALLOW_FLAG) for n in self.allow)
            + tuple(Rule(n, False, f"in {n}", DENY_FLAG) for n in self.deny)
        )
        self.own: tuple[tuple[Address, int], ...] = ()
        self.listening_on(own)

    def for_downstream(self) -> NetworkPolicy:
        """The same flags for downstream deliveries: loopback and the own address are
        allowed by default (the original manager delivers to `localhost:8080`, often this
        very executor); `--deny-net` still applies."""
        return NetworkPolicy(self.allow, self.deny, downstream=True)

    def listening_on(self, endpoints: Iterable[tuple[str, int]]) -> None:
        """Where this executor serves its API (address, port): refused to processors.
        Set from Settings at start-up, and again once the server has bound its sockets
        (so a port 0 becomes the real one). Names are ignored: give addresses."""
        own: list[tuple[Address, int]] = []
        for host, port in endpoints:
            try:
                own.append((ipaddress.ip_address(host.strip("[]")), port))
            except ValueError:
                continue
        self.own = tuple(own)

    # -- deciding ------------------------------------------------------------------------

    def decide(self, address: Address, port: int) -> Decision:
        """Whether a connection to `address`:`port` is allowed, and the rule that said so."""
        if not self.downstream and self._is_own(address, port):
            return Decision(
                address,
                port,
                False,
                "this executor's own address (its API), refused to processors whatever "
                f"{ALLOW_FLAG} says; send to a run with DownstreamLocations instead",
            )
        decision = self._by_rules(address, port)
        if not decision.allowed:
            return decision
        for inner in embedded_ipv4(address):
            carried = self._by_rules(inner, port)
            if not carried.allowed:
                return Decision(address, port, False, f"carries {inner}, which is {carried.reason}")
        return decision

    def check(self, address: Address, port: int, host: str | None = None) -> Decision:
        """`decide`, raising `NetworkRefused` (naming rule and flag) when refused."""
        decision = self.decide(address, port)
        if not decision.allowed:
            raise decision.refusal(host)
        return decision

    def _by_rules(self, address: Address, port: int) -> Decision:
        plain = _unscoped(address)
        rule = max(
            (r for r in self.rules if r.network.version == plain.version and plain in r.network),
            key=Rule.key,
        )
        if rule.allow:
            origin = f"allowed by {rule.flag} {rule.network}" if rule.flag else "allowed"
            return Decision(address, port, True, f"{rule.label}, {origin}")
        host_net = ipaddress.ip_network(plain)
        if rule.flag is None:
            reason = f"{rule.label}, refused by default; allow with {ALLOW_FLAG} {host_net}"
        elif rule.network.prefixlen < host_net.prefixlen:
            reason = f"refused by {rule.flag} {rule.network}; allow with {ALLOW_FLAG} {host_net}"
        else:
            reason = f"refused by {rule.flag} {rule.network}; remove that flag to allow it"
        return Decision(address, port, False, reason)

    def _is_own(self, address: Address, port: int) -> bool:
        plain = _unscoped(address)
        if isinstance(plain, ipaddress.IPv6Address) and plain.ipv4_mapped is not None:
            plain = plain.ipv4_mapped
        for own, own_port in self.own:
            if own_port != port:
                continue
            if own.is_unspecified:
                if _is_local(plain):
                    return True
            elif own == plain:
                return True
        return False

    # -- resolving -----------------------------------------------------------------------

    async def resolve_checked(self, host: str, port: int) -> list[Address]:
        """The addresses of `host` this policy allows, in the resolver's order; raises
        `NetworkRefused` (for the first refused one) when none is allowed, and
        `socket.gaierror` when the name does not resolve."""
        addresses = await _module_resolve(host, port)
        allowed = []
        first_refused: Decision | None = None
        for address in addresses:
            decision = self.decide(address, port)
            if decision.allowed:
                allowed.append(address)
            elif first_refused is None:
                first_refused = decision
        if not allowed:
            if first_refused is None:
                raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
            raise first_refused.refusal(host)
        return allowed


@functools.cache
def default_policy() -> NetworkPolicy:
    """The policy with no flags, for a processor context made without one (a test's,
    an embedding's): the defaults, never an open network."""
    return NetworkPolicy()


def _unscoped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(int(address))
    return address


def _is_local(address: Address) -> bool:
    """Whether `address` belongs to this machine: binding a socket to it succeeds. (No
    packet is sent; an executor listening on 0.0.0.0 answers on every such address.)"""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError as exc:
        # Another error (e.g. a permission) still means the address exists here.
        return exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL)
    return True


def is_loopback_name(host: str) -> bool:
    """Whether `host` (a name or an address, no port or brackets) is a loopback address
    (127.0.0.0/8, ::1) or `localhost`: what may listen without a token, and what a Host
    header may always name."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses of `host`, by the event loop's getaddrinfo (an address is itself).

    The one place names are resolved for outbound connections; tests replace it (as
    `netpolicy.resolve`) to make a name resolve where they want, without DNS."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # a label IDNA refuses (too long, empty): no such name
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r} is not a valid host name") from exc
    seen: list[Address] = []
    for family, *_, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
            text = f"{text.partition('%')[0]}%{sockaddr[3]}"
        address = ipaddress.ip_address(text)
        if address not in seen:
            seen.append(address)
    return seen


async def _module_resolve(host: str, port: int) -> list[Address]:
    """`resolve`, looked up when called, so that a test's replacement is the one used."""
    resolver = typing.cast(typing.Any, sys.modules[__name__]).resolve
    result: list[Address] = await resolver(host, port)
    return result


# -- the httpx side: a network backend that checks, and the transport that uses it ---------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front: `connect_tcp` is given the
    URL's host and port; it resolves the host once, keeps the allowed addresses, and
    connects to them in turn. TLS is started afterwards by httpcore on the stream, with
    the URL's host name as SNI and for certificate verification."""

    def __init__(self, policy: NetworkPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = anyio.current_time() + timeout if timeout is not None else None
        try:
            with anyio.fail_after(timeout):
                addresses = await self.policy.resolve_checked(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:
            left = None if deadline is None else max(deadline - anyio.current_time(), 0.001)
            try:
                return await self.inner.connect_tcp(
                    str(address), port, left, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # resolve_checked returns at least one address
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the network policy allows no Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own defaults."""


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, whose connection pool connects through `GuardedBackend`.

    Proxies from the environment are never used (a proxy would resolve and connect on
    its own, out of the policy's reach); use `guarded_client`, which also keeps the
    client from mounting proxy transports of its own."""

    def __init__(
        self,
        policy: NetworkPolicy,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        context = verify if isinstance(verify, ssl.SSLContext) else None
        if context is None:
            context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=context, trust_env=False, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version builds its transport differently")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(
    policy: NetworkPolicy, verify: ssl.SSLContext | bool = True, **options: typing.Any
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` every connection of which the policy checks: the one way
    the executor makes outbound HTTP clients."""
    return httpx.AsyncClient(transport=GuardedTransport(policy, verify), trust_env=False, **options)
