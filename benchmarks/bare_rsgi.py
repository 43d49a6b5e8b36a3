"""The bare app on granian's RSGI interface: the granian floor beside uvicorn's.

The same work as `bare_app` (read the whole body, decode it with msgspec, answer 200
with a small JSON body, 400 for a body that is not JSON), written against RSGI, the
Rust server's own interface: what any AddData server on granian must at least cost.
"""

from __future__ import annotations

from typing import Any

import msgspec

_decode = msgspec.json.decode
_HEADERS = [("content-type", "application/json")]
_BODY = b'{"Accepted":1,"Duplicates":0}'


class App:
    """RSGI app (granian calls `__rsgi__`); no lifespan work to do."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        body = await protocol()
        try:
            _decode(body)
        except msgspec.DecodeError:
            protocol.response_empty(400, [])
            return
        protocol.response_bytes(200, _HEADERS, _BODY)

    def __rsgi_init__(self, loop: Any) -> None:
        """Nothing to set up."""

    def __rsgi_del__(self, loop: Any) -> None:
        """Nothing to tear down."""


app = App()
