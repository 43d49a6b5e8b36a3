"""Who may drive the executor: the bearer token and the browser defences, in one place.

`Guard` is a pure ASGI middleware in front of everything the app serves, the AddData
fast path included, so no route can be added that it does not cover. Per request it
reads the headers once, then:

1. **Host** (always on; DNS rebinding): the `Host` header must name a loopback address
   (127.0.0.0/8, ::1, `localhost`), the address the request arrived on, or a name
   allowed with `--allow-host`; else 421 Misdirected Request. A page on
   `evil.example`, whose name an attacker made resolve to 127.0.0.1, sends
   `Host: evil.example` and is refused before anything runs.
2. **Origin** (always on; cross-site request forgery): a request carrying `Origin`
   must come from the executor's own origin (`scheme://` + its Host header) or one
   allowed with `--allow-origin`; `Origin: null` (sandboxed frames, `file://` pages) is
   refused too. `Sec-Fetch-Site: cross-site` or `same-site` (another port of the same
   host is another origin) is refused unless the Origin is an allowed one; `none` (the
   user typed the URL) and `same-origin` pass. Refusals are 403. curl, the Go client
   and the Python client send neither header, so they are not affected.
3. **Token** (when the executor has one): `Authorization: Bearer TOKEN`, compared in
   constant time; else 401 with a `WWW-Authenticate: Bearer` challenge (RFC 6750).
   `/healthz`, the dashboard's page and files, `/docs` and `/openapi.json` stay open (they
   hold nothing of the runs; the calls the pages make need the token), and `/metrics`
   too under `--metrics-public`.

The `HTTPBearer` security scheme and these answers are written into the OpenAPI
document by `document_guard`; the scheme there only documents, the guard enforces.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from time import perf_counter
from typing import Any

from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Forbidden, MisdirectedRequest, Unauthorized, WizError
from ..netpolicy import is_loopback_name
from ..settings import Settings
from ._errors import error_body, error_headers, status_of

OPEN_PATHS = frozenset({"/healthz", "/", "/docs", "/openapi.json"})
"""Served without the token: nothing in them is about the runs."""
OPEN_PREFIXES = ("/static/", "/docs/assets/")
METRICS = "/metrics"

BEARER = HTTPBearer(
    scheme_name="bearerToken",
    description="The executor's token (`wiz executor --token`, `WIZ_TOKEN` or "
    "`--token-file`), sent as `Authorization: Bearer TOKEN`. Required by every operation "
    "but /healthz and the dashboard page when the executor has a token.",
    auto_error=False,
)
"""FastAPI's scheme, for the OpenAPI document (and the Authorize button of /docs)."""

_KNOWN_HOSTS_MAX = 256
"""Host header values found good, remembered so the common case is one set lookup."""

_MISSING = (
    "this executor requires a token: send it as Authorization: Bearer TOKEN "
    "(the wiz command and the Python client read it from WIZ_TOKEN or --token)"
)
_WRONG = "the bearer token is not the one this executor was started with"


class Guard:
    """The checks above, as ASGI middleware. `on_refused(method, status, seconds)` is
    told of every refusal, so the HTTP metrics count them like any other answer."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        on_refused: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.token = settings.token.encode() if settings.token else None
        self._expected = b"Bearer " + (self.token or b"")
        self.open_paths = OPEN_PATHS | ({METRICS} if settings.metrics_public else set())
        self.allowed_hosts = frozenset(settings.allowed_hosts)
        self.any_host = "*" in self.allowed_hosts
        self.allowed_origins = frozenset(settings.allowed_origins)
        self.on_refused = on_refused
        self._known_hosts: set[tuple[bytes, Any]] = set()

    def is_open(self, path: str) -> bool:
        """Whether `path` is served without the token."""
        return path in self.open_paths or path.startswith(OPEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One dict of the few headers a request has: the cheapest way to read four.
        headers = dict(scope["headers"])
        host = headers.get(b"host")
        origin = headers.get(b"origin")
        site = headers.get(b"sec-fetch-site")
        try:
            if host is not None:
                self._check_host(scope, host)
            if origin is not None or site is not None:
                self._check_origin(scope, host, origin, site)
            if self.token is not None and not self.is_open(scope["path"]):
                self._check_token(headers.get(b"authorization"))
        except WizError as exc:
            await self._refuse(scope, send, exc)
            return
        await self.app(scope, receive, send)

    # -- the checks ----------------------------------------------------------------------

    def _check_host(self, scope: Scope, host: bytes) -> None:
        server = scope.get("server")
        key = (host, server[0] if server else None)
        if key in self._known_hosts:
            return
        name = _host_name(host.decode("latin-1"))
        if not (
            self.any_host
            or name in self.allowed_hosts
            or (server is not None and name == str(server[0]).lower())
            or is_loopback_name(name)
        ):
            raise MisdirectedRequest(
                f"refused: the Host header names {name[:100]!r}, which is not an address of "
                "this executor; if that name does lead here, allow it with --allow-host "
                "(a page on another site whose name resolves to this machine is refused "
                "so, against DNS rebinding)"
            )
        if len(self._known_hosts) < _KNOWN_HOSTS_MAX:
            self._known_hosts.add(key)

    def _check_origin(
        self, scope: Scope, host: bytes | None, origin: bytes | None, site: bytes | None
    ) -> None:
        sent = origin.decode("latin-1").lower() if origin is not None else None
        allowed = sent is not None and sent in self.allowed_origins
        if sent is not None and not allowed and sent != _own_origin(scope, host):
            raise Forbidden(
                f"refused: a browser page of {sent[:100]} may not call this executor; only "
                "pages of its own origin and of origins allowed with --allow-origin may"
            )
        if site in (b"cross-site", b"same-site") and not allowed:
            raise Forbidden(
                f"refused: a browser request from another site (Sec-Fetch-Site: "
                f"{site.decode('latin-1')}) may not call this executor; allow the page's "
                "origin with --allow-origin, or open the executor's own pages"
            )

    def _check_token(self, auth: bytes | None) -> None:
        if auth is not None and hmac.compare_digest(auth, self._expected):
            return  # the usual header, exactly: one comparison
        if auth is None or auth[:7].lower() != b"bearer ":
            raise Unauthorized(_MISSING)
        # compare_digest takes time independent of where the bytes differ.
        if not hmac.compare_digest(auth[7:].strip(), self.token or b""):
            raise Unauthorized(_WRONG, error="invalid_token")

    async def _refuse(self, scope: Scope, send: Send, exc: WizError) -> None:
        started = perf_counter()
        status = status_of(exc)
        body = error_body(exc.message)
        headers = [(b"content-type", b"application/json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(exc).items()]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if _is_head(scope) else body})
        if self.on_refused is not None:
            self.on_refused(scope["method"], status, perf_counter() - started)


def _is_head(scope: Scope) -> bool:
    return bool(scope["method"] == "HEAD")


def _host_name(host: str) -> str:
    """The name or address of a Host header, without port, brackets or final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0].rstrip(".") if ":" in host else host.rstrip(".")


def _own_origin(scope: Scope, host: bytes | None) -> str | None:
    """`scheme://host[:port]` of this request as its Host header says (the Host has
    passed its own check by now), without the scheme's default port, as browsers write
    an Origin."""
    if host is None:
        return None
    scheme = str(scope.get("scheme", "http"))
    text = host.decode("latin-1").strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return f"{scheme}://{text.removesuffix(default) if default else text}"


def document_guard(document: dict[str, Any], guard: Guard) -> None:
    """Write the guard's answers into the OpenAPI document: 403 and 421 on every
    operation; with a token, the bearer scheme and a 401 on every operation that
    needs it."""
    refusals = {
        "403": "refused: a browser request from another origin or site",
        "421": "refused: the Host header names no address of this executor",
    }
    error_schema = {"$ref": "#/components/schemas/ErrorBody"}
    content = {"application/json": {"schema": error_schema}}
    if guard.token is not None:
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER.scheme_name] = BEARER.model.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for code, text in refusals.items():
                responses.setdefault(code, {"description": text, "content": content})
            if guard.token is not None and not guard.is_open(path):
                operation["security"] = [{BEARER.scheme_name: []}]
                responses["401"] = {
                    "description": "the bearer token is missing or wrong",
                    "headers": {
                        "WWW-Authenticate": {
                            "description": 'Bearer realm="wiz-executor", with '
                            'error="invalid_token" when a wrong token was sent (RFC 6750)',
                            "schema": {"type": "string"},
                        }
                    },
                    "content": content,
                }
