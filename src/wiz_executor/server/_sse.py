"""An ASGI response that sends one `Subscription` as a Server-Sent-Events stream.

Three things can end a stream, and each ends it promptly:
- the subscription ends (the run is done, the consumer was dropped, the executor is
  shutting down): what is buffered is sent, then the response completes;
- the client disconnects: the subscription is closed at once;
- the client stops reading while the subscription has ended: sending is given
  `linger` seconds, then abandoned, so a stuck client cannot hold up shutdown.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..events import Subscription

HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell reverse proxies not to buffer the stream
}


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, subscription: Subscription, keepalive: float, linger: float = 5.0) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self.subscription = subscription
        self.keepalive = keepalive
        self.linger = linger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.subscription
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            pump = asyncio.ensure_future(self._pump(send))
            watch = asyncio.ensure_future(_disconnected(receive))
            give_up = asyncio.ensure_future(self._give_up_after_end())
            tasks = {pump, watch, give_up}
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with suppress(asyncio.CancelledError):
                        await task
        finally:
            sub.close()

    async def _pump(self, send: Send) -> None:
        try:
            async for data in self.subscription.batches(self.keepalive):
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client is gone (servers of ASGI spec 2.4 say so this way)

    async def _give_up_after_end(self) -> None:
        await self.subscription.wait_ended()
        await asyncio.sleep(self.linger)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
