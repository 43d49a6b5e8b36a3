"""HTTP's own rules, kept in one place for every route: paths that are not UTF-8, HEAD,
and the methods a 405 lists in `Allow`.

- ASGI servers percent-decode the path with `errors="replace"`, so `/runs/%FF` reaches
  the app as the run ID "\\ufffd": a different ID than the client sent, which a Configure
  would create. A path whose percent-decoded bytes are not UTF-8 is a 400 instead.
- HEAD is GET without the body (RFC 9110 §9.3.2): the same status and headers,
  `Content-Length` included. FastAPI's routes take only the methods they declare, so
  HEAD is served here, once, for every GET route, and ends even an endless event stream.
- Starlette's router answers 405 with the methods of the first route whose path matched;
  a path served by several routes (GET and DELETE on a run) takes all of their methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidInput
from ._errors import error_body, status_of

_REPLACED = "\ufffd"


def path_is_utf8(scope: Scope) -> bool:
    """Whether the request path, percent-decoded, is UTF-8.

    A byte the server could not decode became U+FFFD, so the raw path is read only when
    the decoded one holds that character (a real U+FFFD, sent as `%EF%BF%BD`, passes)."""
    if _REPLACED not in scope["path"]:
        return True
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return True  # nothing to tell a sent U+FFFD from a replaced byte: take it as sent
    try:
        unquote_to_bytes(raw.split(b"?", 1)[0]).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """Every method some route takes at this request's path, for a 405's `Allow`."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:
        methods.add("HEAD")  # served by HttpRules for every GET route
    return ", ".join(sorted(methods))


class HttpRules:
    """Pure ASGI middleware applying the rules above before routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif not path_is_utf8(scope):
            await _refuse_path(scope, send)
        elif scope["method"] == "HEAD":
            await self._head(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request as a GET; send its status and headers, drop its body.

        Once the headers are out the response is complete, so the app is then told the
        client has gone: a streaming response (an event stream) stops instead of
        running on for nobody."""
        inner = dict(scope, method="GET")
        answered = False

        async def send_headers_only(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def receive_until_answered() -> Message:
            if answered:
                return {"type": "http.disconnect"}
            return await receive()

        try:
            await self.app(inner, receive_until_answered, send_headers_only)
        finally:
            # The router records what it matched in the scope it was given; the metrics,
            # outside, read it from theirs.
            for key in ("route", "endpoint"):
                if key in inner:
                    scope[key] = inner[key]


async def _refuse_path(scope: Scope, send: Send) -> None:
    exc = InvalidInput(f"request path is not valid UTF-8 once percent-decoded: {_raw_path(scope)}")
    body = error_body(exc.message)
    await send(
        {
            "type": "http.response.start",
            "status": status_of(exc),
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _raw_path(scope: Scope) -> str:
    raw: bytes = scope.get("raw_path") or b""
    return raw.split(b"?", 1)[0].decode("ascii", "backslashreplace")[:200]
