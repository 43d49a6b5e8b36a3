"""How long the executor keeps an idle keep-alive connection open.

A client that pools connections reuses an idle one for its next request. If the server
closes that connection just as the request goes out, the request fails; a careful
client retries, but the original Go manager does not retry a POST AddData that failed
so, and a pipeline then fails at random after a pause. The race is avoided when the
server keeps idle connections open longer than its clients do: they close them first.
uvicorn's default (5 s) is shorter than Go's `http.Transport` (`IdleConnTimeout`, 90 s)
and equal to httpx's pool (5 s); the original Go server (net/http without
`IdleTimeout`) never closed them. So the executor keeps them `--keep-alive-timeout`
seconds (`Settings.keep_alive_timeout`, 620 s by default: above Go's 90 s, OkHttp's
300 s, and the 600 s of the load balancers that document it).

One bound remains: a client that never returns its connections to a pool (the original
Go client does not close response bodies, so each call opens a new connection) would
hold a file descriptor per request for that long. While more than `crowded_above()`
connections are open, a connection that goes idle is closed after uvicorn's 5 s
instead, as before this option existed.
"""

from __future__ import annotations

import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

CROWDED_TIMEOUT = 5
"""Seconds an idle connection is kept while the server is crowded (uvicorn's default)."""


def crowded_above() -> int:
    """Open connections past which idle ones get `CROWDED_TIMEOUT`: a quarter of the
    process's file descriptor limit (at least 256), so that connections left idle by a
    client cannot starve the journal, processors and new clients of descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(256, soft // 4)


class KeepAliveProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the keep-alive timeout shortened while the
    server is crowded (see the module docstring)."""

    crowd = crowded_above()
    """`crowded_above()`, read once (the limit is the process's)."""

    def on_response_complete(self) -> None:
        # The base class arms the idle timer with self.timeout_keep_alive.
        crowded = len(self.connections) > self.crowd
        self.timeout_keep_alive = (
            min(CROWDED_TIMEOUT, self.config.timeout_keep_alive)
            if crowded
            else self.config.timeout_keep_alive
        )
        super().on_response_complete()
