"""The Swagger UI page renders the API's operations in a real Chromium that may reach
nothing but the executor on 127.0.0.1 (no CDN, no internet)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from conftest import live_server
from test_dashboard import browser_page
from wiz_executor import Settings


async def test_swagger_ui_renders_the_operations_offline(settings: Settings) -> None:
    async with live_server(settings) as (url, _), browser_page() as (page, errors):
        origin = urlsplit(url).netloc
        elsewhere: list[str] = []

        async def only_the_executor(route: Any) -> None:
            request = route.request
            if urlsplit(request.url).netloc == origin:
                await route.continue_()
            else:
                elsewhere.append(request.url)
                await route.abort()

        await page.route("**/*", only_the_executor)
        await page.goto(url + "/docs")
        operations = page.locator(".opblock-summary-path")
        await operations.first.wait_for()
        paths = set(await operations.all_inner_texts())
        assert "/processors/{procID}/runs/{runID}/data" in {p.replace("\u200b", "") for p in paths}
        assert await page.locator(".opblock-post").count() >= 3
        assert elsewhere == []
        assert errors == []
