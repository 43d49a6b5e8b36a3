"""A prototype, for measurement only: the executor served by granian, AddData on RSGI.

`python -m benchmarks.granian_front DATA_DIR PORT [--ephemeral]` serves the executor on
127.0.0.1:PORT with granian's embedded server (RSGI, one worker, in this process's
uvloop loop): AddData is answered from RSGI with the fast path's `add_data_response` and
the early refusals; every other request goes through a small RSGI→ASGI bridge into the
FastAPI app, so the benchmark's Configure, GetRun and DELETE work. SIGINT or SIGTERM
stops it.

It is NOT a server to ship (see benchmarks/results/history.md, "The HTTP front"): the
RSGI path checks only the Host header (no token, no Origin), reads the whole body before
checking its size, and the bridge sends no disconnects while a request runs. It exists
so that the granian evaluation of issue #11 can be measured again against
`wiz executor` with the same load generator.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import uvloop
from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server.embed import Server

from wiz_executor import Executor, Settings
from wiz_executor.errors import ExecutorFull, PayloadTooLarge, WizError
from wiz_executor.server._early import refuse_before_body
from wiz_executor.server._errors import error_body, error_headers, status_of
from wiz_executor.server._fastpath import add_data_response, full_hold
from wiz_executor.server.app import create_app

_JSON = [("content-type", "application/json")]


class Front:
    """The RSGI app: AddData here, the rest bridged to the ASGI app."""

    def __init__(self, app: Any, executor: Executor) -> None:
        self.app = app
        self.executor = executor

    def __rsgi_init__(self, loop: Any) -> None:
        """The executor is started by `main`, around the server."""

    def __rsgi_del__(self, loop: Any) -> None:
        """And stopped there."""

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        if scope.method == "POST":
            parts = scope.path.split("/")
            if (
                len(parts) == 6
                and parts[5] == "data"
                and parts[1] == "processors"
                and parts[3] == "runs"
            ):
                await self.add_data(scope, proto, parts[2], parts[4])
                return
        await self.bridge(scope, proto)

    async def add_data(self, scope: Any, proto: Any, proc_id: str, run_id: str) -> None:
        executor = self.executor
        headers = _JSON
        body = b""
        try:
            host = scope.headers.get("host")
            if host is not None:  # the guard's Host check; the token and Origin are not
                self.app.guard._check_host({"server": None}, host.encode("latin-1"))
            length = scope.headers.get("content-length", "").encode("latin-1")
            refuse_before_body(executor, proc_id, run_id, [(b"content-length", length)])
            body = await proto()
            if len(body) > executor.settings.max_body_bytes:
                raise PayloadTooLarge(executor.settings.max_body_bytes)
            payload = await add_data_response(executor, proc_id, run_id, body)
            status = 200
        except WizError as exc:
            if isinstance(exc, ExecutorFull):
                await asyncio.sleep(full_hold(len(body)))  # as the fast path holds it
            status = status_of(exc)
            payload = error_body(exc.message)
            headers = _JSON + list(error_headers(exc).items())
        proto.response_bytes(status, headers, payload)

    async def bridge(self, scope: Any, proto: Any) -> None:
        body = await proto()
        host, _, port = scope.server.rpartition(":")
        asgi_scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": unquote(scope.path),
            "raw_path": scope.path.encode(),
            "query_string": scope.query_string.encode(),
            "root_path": "",
            "headers": [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()
            ],
            "client": None,
            "server": (host, int(port)),
            "state": {},
        }
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await proto.client_disconnect()
            return {"type": "http.disconnect"}

        start: tuple[int, list[tuple[str, str]]] = (500, [])
        stream: Any = None

        async def send(message: dict[str, Any]) -> None:
            nonlocal start, stream
            if message["type"] == "http.response.start":
                pairs = message.get("headers", [])
                start = (
                    message["status"],
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs],
                )
            elif message["type"] == "http.response.body":
                more = message.get("more_body", False)
                if stream is None and not more:
                    proto.response_bytes(start[0], start[1], message.get("body", b""))
                    return
                if stream is None:
                    stream = proto.response_stream(*start)
                if message.get("body"):
                    await stream.send_bytes(message["body"])

        await self.app(asgi_scope, receive, send)


async def main(data_dir: str, port: int, ephemeral: bool) -> None:
    settings = Settings(data_dir=Path(data_dir), ephemeral=ephemeral)
    async with Executor(settings) as executor:
        app = create_app(executor=executor)
        server = Server(
            Front(app, executor),
            address="127.0.0.1",
            port=port,
            interface=Interfaces.RSGI,
            log_level=LogLevels.warning,
            websockets=False,
        )

        def stop() -> None:
            executor.events.close()
            server.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await server.serve()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), "--ephemeral" in sys.argv[3:]))
