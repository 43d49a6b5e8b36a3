"""`python -m benchmarks.serve executor|bare`: a server under test, in its own process.

Both apps are served with the same uvicorn settings (uvloop, httptools, no access log),
which are what `wiz executor` gets from uvicorn's `auto` choices when uvicorn[standard]
is installed, on 127.0.0.1 and a port the kernel picks; the port is printed on the first
line of stdout for the parent to read. SIGINT or SIGTERM stops the server.
"""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "log_level": "warning",
    "access_log": False,
    "lifespan": "on",
}


MAX_PENDING = 2_000_000


def _app(kind: str, data_dir: Path) -> Any:
    if kind == "bare":
        from .bare_app import app

        return app
    from wiz_executor import Settings, create_app

    # wrk does not honour Retry-After: room for every chunk of a load, so that a load
    # measures the executor's pace rather than how fast it answers 429.
    return create_app(Settings(data_dir=data_dir, max_pending=MAX_PENDING))


def main() -> None:
    kind = sys.argv[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = uvicorn.Config(_app(kind, Path(tmp)), **SERVER_OPTIONS)
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
