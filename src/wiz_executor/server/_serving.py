"""Serving the app with uvicorn so that open event streams do not hold up shutdown.

On a signal, uvicorn stops accepting, waits for every open response to finish, and only
then runs the lifespan shutdown that stops the executor. An event stream never finishes
by itself, so a dashboard left open would keep the server up until
`timeout_graceful_shutdown` ran out, then be cut off with errors. This server ends the
event streams first (each one completes cleanly), then shuts down as uvicorn does.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
from contextlib import suppress
from typing import Any

import uvicorn

from .._tls import SERVER_CIPHERS
from ..settings import Settings

STARTUP_FAILURE = 3
"""The exit code uvicorn uses when the server could not start."""


log = logging.getLogger("wiz_executor.server")


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        executor = getattr(getattr(self.config.app, "state", None), "executor", None)
        if self.started and executor is not None:
            # Processors may not fetch from here; now the real port of a port 0 is known.
            await executor.listening_on(self._endpoints())
            log.info("executor started on %s: %s", self._address(), describe(executor.settings))

    def _endpoints(self) -> list[tuple[str, int]]:
        """Every (address, port) the server's sockets are bound to."""
        return [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1]))
            for server in self.servers
            for sock in server.sockets
            if sock.family in (socket.AF_INET, socket.AF_INET6)
        ]

    def _address(self) -> str:
        """Where it listens: the socket bound (so port 0 shows the real port)."""
        for server in self.servers:
            for sock in server.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    host, port = sock.getsockname()[:2]
                    host = f"[{host}]" if ":" in host else host
                    return f"{self._scheme()}://{host}:{port}"
        return f"{self._scheme()}://{self.config.host}:{self.config.port}"

    def _scheme(self) -> str:
        return "https" if self.config.is_ssl else "http"

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.config.app, "state", None)
        executor = getattr(state, "executor", None)
        if executor is not None:
            executor.events.close()
        drop_idle_tls_connections(self)
        await super().shutdown(sockets)


def drop_idle_tls_connections(server: uvicorn.Server) -> None:
    """Close the idle connections of a TLS server at once, before uvicorn's shutdown.

    uvicorn closes an idle keep-alive connection politely, and over TLS asyncio then
    waits up to 30 s for the client's own TLS close. A client's idle pooled connection
    (another executor's downstream client, the executor's own, a pipeline's) is not
    being read, so it never answers, and shutdown waited for it, then logged a timeout.
    Between two requests there is nothing to cut short: the client sees a closed idle
    connection, as after any server's keep-alive timeout. Connections in the middle of
    a request are left to uvicorn, which lets them finish."""
    if not server.config.is_ssl:
        return
    for connection in list(server.server_state.connections):
        cycle = getattr(connection, "cycle", None)
        transport = getattr(connection, "transport", None)
        if transport is not None and (cycle is None or cycle.response_complete):
            transport.abort()


def describe(settings: Settings) -> str:
    """The settings an operator checks first, on one line."""
    chunk_timeout = settings.default_chunk_timeout
    timeout = f"{chunk_timeout:g} s" if chunk_timeout else "none"
    roots = ", ".join(str(root) for root in settings.allowed_roots) or "none"
    return (
        f"work model {settings.work_model.value}, max workers {settings.max_workers}, "
        f"run workers {settings.default_run_workers}, max pending {settings.max_pending}, "
        f"chunk timeout {timeout}, shutdown grace {settings.shutdown_grace:g} s, "
        f"keep-alive {settings.keep_alive_timeout:g} s, "
        f"max body {settings.max_body_bytes} bytes, data dir {settings.data_dir}, "
        f"allowed roots {roots}, "
        f"--allow-net {', '.join(settings.allow_net) or 'none'}, "
        f"--deny-net {', '.join(settings.deny_net) or 'none'}, "
        + (
            "journal none (--ephemeral: nothing survives the process)"
            if settings.ephemeral
            else f"journal {settings.journal_path}{' (fsync)' if settings.fsync else ''}, "
            f"max attempts {settings.max_attempts}"
        )
    )


def connection_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the executor's connections: the protocol, the idle
    keep-alive timeout (`_keepalive.py`), and no `Server: uvicorn` header (the Go
    original sends none; uvicorn checks and writes each header of every answer, ~0.3 µs
    of its ~4.5 µs per AddData answer, see benchmarks/results/history.md)."""
    http: Any
    try:
        from ._keepalive import KeepAliveProtocol as http
    except ImportError:  # no httptools for this Python (PyPy, a new CPython): uvicorn's
        http = "h11"  # h11 protocol, with the timeout but without the crowd rule
    return {
        "http": http,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "server_header": False,
    }


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options to serve HTTPS with the settings' certificate and key (none when
    TLS is off). Check the files first with `_tls.server_context`: uvicorn loads them
    with a traceback on failure, and would prompt for an encrypted key's password."""
    if settings.ssl_certfile is None or settings.ssl_keyfile is None:
        return {}
    return {
        "ssl_certfile": str(settings.ssl_certfile),
        "ssl_keyfile": str(settings.ssl_keyfile),
        "ssl_keyfile_password": settings.ssl_keyfile_password,
        "ssl_ciphers": SERVER_CIPHERS,
    }


def run(app: Any, **options: Any) -> None:
    """`uvicorn.run` for one process, with `Server`; exits with status 3 when the server
    cannot start (e.g. the port is taken), as uvicorn does."""
    server = Server(uvicorn.Config(app, **options))
    # What is alive now (modules, classes, the app) lives as long as the process. Frozen,
    # the garbage collector no longer walks it in every full collection: those walks
    # paused the server for ~45 ms under load, the AddData p99 (21 -> 4 ms measured).
    gc.collect()
    gc.freeze()
    with suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
