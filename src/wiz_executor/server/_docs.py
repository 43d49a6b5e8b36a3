"""The docs page, /docs (Swagger UI), with its assets served by the executor itself.

FastAPI's own pages load Swagger UI, ReDoc, Google Fonts and a favicon from CDNs, so on a
machine without internet (where executors often run) they stay blank. Swagger UI 5
(which reads OpenAPI 3.1) ships in the `fastapi-offline` package; its files are read from
there and served under /docs/assets/. There is no /redoc: ReDoc, even served locally,
loads its logo from its vendor's CDN.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from ..errors import NotFound

ASSETS = "/docs/assets"
_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


@cache
def _load_assets() -> dict[str, tuple[bytes, str]]:
    """Read on the first request for one (1.7 MB that most executors never serve), then
    kept: they change only with the installed package."""
    folder = resources.files("fastapi_offline") / "static"
    return {name: ((folder / name).read_bytes(), kind) for name, kind in _FILES.items()}


def add_docs_routes(app: FastAPI) -> None:
    """Add /docs and its assets; the app must be made with `docs_url=None` and
    `redoc_url=None` so that FastAPI does not add its CDN pages."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        try:
            body, media_type = _load_assets()[name]
        except KeyError:
            raise NotFound(f"no docs asset {name!r}") from None
        # The files change only with the package: a day of caching spares 1.6 MB a visit.
        return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=86400"})
