"""An executor served in a background thread, for one command's (or one test's) duration.

`wiz pipeline run` without `--url` needs an executor only while the pipeline runs; this
starts the real app on uvicorn, on 127.0.0.1 and an ephemeral port, in a thread with its
own event loop, so a blocking caller (the CLI, a sync test) can use it over HTTP. The
thread is not the main thread, so uvicorn installs no signal handlers and Ctrl-C reaches
the caller, which stops the server on its way out.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Self

import uvicorn

from ..server import create_app
from ..server._serving import connection_options, drop_idle_tls_connections, tls_options
from ..settings import Settings


class _Server(uvicorn.Server):
    """uvicorn, telling another thread when it is ready."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        drop_idle_tls_connections(self)
        await super().shutdown(sockets)


class EmbeddedExecutor:
    """`with EmbeddedExecutor(settings) as ex:` serves an executor at `ex.url` until exit."""

    def __init__(self, settings: Settings | None = None, startup_timeout: float = 30.0) -> None:
        self.settings = settings or Settings()
        self.startup_timeout = startup_timeout
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.url = ""

    @property
    def hostname(self) -> str:
        """How `DownstreamLocations[].Hostname` names this executor: host:port, or its
        https URL when it serves TLS (a bare host:port means plain http)."""
        return self.url.removeprefix("http://")

    def __enter__(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("an EmbeddedExecutor can be started only once")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        options = tls_options(self.settings)
        scheme = "https" if options else "http"
        self.url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(self.settings),
            log_level="warning",
            lifespan="on",
            access_log=False,
            **connection_options(self.settings),
            **options,
        )
        self._server = server = _Server(config)
        self._thread = threading.Thread(
            target=self._serve, args=(server, sock), name="wiz-embedded-executor", daemon=True
        )
        self._thread.start()
        server.ready.wait(self.startup_timeout)
        if not server.started:
            self._stop()
            why = f": {self._error!r}" if self._error is not None else ""
            raise RuntimeError(f"the embedded executor did not start{why}")
        return self

    def _serve(self, server: _Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
        finally:
            server.ready.set()  # wakes a starter waiting on a server that died early

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        """Ask uvicorn to stop (it drains requests, then the lifespan shuts the
        executor down within its grace period) and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.settings.shutdown_grace + 10)
        if self._sock is not None:
            self._sock.close()
