"""The bare app: the least any AddData server must do, as the yardstick for the executor.

A raw ASGI app that reads the whole body, decodes it with msgspec (so a malformed body
would be refused, as the executor's is) and answers 200 with a small JSON body. It keeps
nothing and runs nothing: executor requests/s ÷ bare requests/s on the same server stack
and load is what the executor's own work costs.
"""

from __future__ import annotations

import msgspec
from starlette.types import Receive, Scope, Send

_decode = msgspec.json.decode
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"29")],
}
_BODY = {"type": "http.response.body", "body": b'{"Accepted":1,"Duplicates":0}'}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
    try:
        _decode(body)
    except msgspec.DecodeError:
        await send({**_START, "status": 400, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(_START)
    await send(_BODY)
