"""HTTP for the built-in processors: one client recipe, one retry policy, plain messages.

`get` and `scrape` both fetch from servers that may be down, slow or wrong. Here a
failure becomes a `FetchError` that says what happened in words a person can act on
("could not connect to 127.0.0.1:9 (connection refused)", "answered HTTP 404 Not
Found"), and knows whether trying again could help. Transient failures (connection
errors, timeouts, 408/425/429/5xx) are retried under the project's one retry policy
(`wiz_executor._retrying`): exponential backoff that honours `Retry-After` in both its
forms; everything else fails at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from .. import __version__
from .._retrying import Backoff, parse_retry_after
from .._tls import CA_CERTS_HINT, client_context, verification_failure
from ..errors import ChunkFailed
from ..netpolicy import NetworkPolicy, guarded_client

USER_AGENT = f"wiz-executor/{__version__}"

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers that say "not now" rather than "no": worth another try."""

UNPROCESSED_STATUS = frozenset({408, 425, 429, 503})
"""Answers after which the server surely did not act, so even a POST may be resent."""

MAX_BACKOFF = 30.0

T = TypeVar("T")


class FetchError(ChunkFailed):
    """A request failed; `transient` says whether another attempt could succeed, and
    `unprocessed` whether the server can be sure not to have acted on it."""

    def __init__(
        self, message: str, transient: bool, unprocessed: bool = False, retry_after: float = 0
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.unprocessed = unprocessed
        self.retry_after = retry_after
        """Seconds the server asked us to wait before trying again (Retry-After)."""


def make_client(
    policy: NetworkPolicy,
    idle_timeout: float,
    connect_timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """A client for one chunk: redirects followed, and a timeout on every network step
    (connect, and the silence between two reads) rather than on the whole transfer, so
    a large download that keeps moving is never cut off. Every connection, each
    redirect's included, goes through the network `policy` (`netpolicy`): an address it
    refuses raises `NetworkRefused`, which fails the chunk at once (never retried). `tls`
    is what https servers are verified against (the chunk's `Context.tls`); None is the
    default trust."""
    idle = idle_timeout or None
    connect = min(connect_timeout, idle) if idle else connect_timeout
    return guarded_client(
        policy,
        # Shared, never rebuilt per chunk: loading the CA stores takes tens of ms.
        tls or client_context(),
        follow_redirects=True,
        max_redirects=10,
        timeout=httpx.Timeout(idle, connect=connect),
        headers={"User-Agent": USER_AGENT},
    )


def transport_error(exc: httpx.HTTPError, url: str) -> FetchError:
    """Words for a request that got no usable answer."""
    host = _host(url)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return FetchError(f"could not connect to {host} in time ({detail})", True, True)
    if isinstance(exc, httpx.TimeoutException):
        return FetchError(f"{host} stopped sending data (timed out: {detail})", True)
    if isinstance(exc, httpx.ConnectError):
        refused = verification_failure(exc)
        if refused:  # final: another attempt meets the same certificate
            return FetchError(f"could not connect to {host}: {refused}; {CA_CERTS_HINT}", False)
        reason = _connect_reason(exc, detail)
        return FetchError(f"could not connect to {host} ({reason})", True, True)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return FetchError(f"{url!r} is not an http:// or https:// URL", False)
    if isinstance(exc, httpx.TooManyRedirects):
        return FetchError(f"{url} redirected too many times", False)
    if isinstance(exc, httpx.InvalidURL):
        return FetchError(f"{url!r} is not a valid URL ({detail})", False)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return FetchError(f"the connection to {host} broke ({detail})", True)
    if isinstance(exc, httpx.NetworkError):
        return FetchError(f"network error talking to {host} ({detail})", True)
    return FetchError(f"request to {url} failed: {type(exc).__name__}: {detail}", False)


def _connect_reason(exc: BaseException, detail: str) -> str:
    """Why a connection failed, from the deepest OS error behind httpx's wrapper (which
    says only "All connection attempts failed")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused: is the server running?"
        if isinstance(current, socket.gaierror):
            return f"cannot resolve the host name: {current.strerror or current}"
        if isinstance(current, OSError) and current.errno:
            return os.strerror(current.errno)
        current = current.__cause__ or current.__context__
    return detail


async def status_error(resp: httpx.Response, url: str) -> FetchError:
    """Words for an error answer, with the start of its body when it is text."""
    code = resp.status_code
    text = f"{url} answered HTTP {code} {resp.reason_phrase}".rstrip()
    snippet = await _snippet(resp)
    if snippet:
        text += f": {snippet}"
    return FetchError(
        text,
        code in TRANSIENT_STATUS,
        code in UNPROCESSED_STATUS,
        parse_retry_after(resp.headers.get("retry-after")) or 0.0,
    )


async def _snippet(resp: httpx.Response, limit: int = 300) -> str:
    kind = resp.headers.get("content-type", "")
    if not (kind.startswith("text/") or "json" in kind):
        return ""
    body = bytearray()
    try:
        async for block in resp.aiter_bytes():
            body += block
            if len(body) >= limit:
                break
    except httpx.HTTPError:
        pass
    return " ".join(body[:limit].decode("utf-8", "replace").split())


async def with_retries(
    attempt: Callable[[int], Awaitable[T]],
    retries: int,
    backoff: float,
    idempotent: bool = True,
) -> T:
    """Run `attempt(n)` until it succeeds, retrying transient `FetchError`s up to
    `retries` times; a request that may have been acted on is resent only if it is
    idempotent. The last error is raised, saying how many attempts were made."""

    def transient(exc: Exception) -> float | None:
        if isinstance(exc, FetchError) and exc.transient and (idempotent or exc.unprocessed):
            return exc.retry_after
        return None

    policy = Backoff(first=backoff, cap=MAX_BACKOFF, attempts=retries + 1)
    n = 0
    try:
        async for trying in policy.retrying(transient):
            with trying:
                n = trying.retry_state.attempt_number - 1
                return await attempt(n)
    except FetchError as exc:
        if n:
            exc.message = f"{exc.message} (gave up after {n + 1} attempts)"
            exc.args = (exc.message,)
        raise
    raise AssertionError("the retry loop ends by returning or raising")


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped a task group of requests: the first that is not a
    cancellation (the group cancels the others once one fails)."""
    first: BaseException = group.exceptions[0]
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return first


def _host(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    host = parsed.host or url
    return f"{host}:{parsed.port}" if parsed.port else host


def http_date(timestamp: float) -> str:
    """An HTTP date (as in Last-Modified) for a file's modification time."""
    return email.utils.formatdate(timestamp, usegmt=True)
