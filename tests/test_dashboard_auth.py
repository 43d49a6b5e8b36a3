"""The dashboard with a token, and a page of another origin trying to drive an executor,
in a real headless Chromium (see test_dashboard for how it is driven)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx

from conftest import live_server
from test_dashboard import add, browser_page, configure, pytestmark, row  # noqa: F401
from wiz_executor import Settings

TOKEN = "dashboard-token-7"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def not_about_the_token(errors: list[str]) -> list[str]:
    """What went wrong in the page besides the 401s that made it ask for the token
    (each is also logged by Chromium as a failed resource)."""
    return [e for e in errors if "401" not in e]


async def test_the_dashboard_asks_for_the_token_once_and_keeps_it(settings: Settings) -> None:
    async with (
        live_server(replace(settings, token=TOKEN)) as (url, _),
        httpx.AsyncClient(base_url=url, headers=AUTH) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "steps", 2)
        await page.goto(url + "/")
        # the page itself loads; the API answers 401, so the page asks
        await page.wait_for_selector("#auth:not([hidden])")
        assert await page.is_hidden("#auth-error")
        await page.fill("#auth-token", "not-the-token")
        await page.click("#auth-submit")
        await page.wait_for_selector("#auth:not([hidden]) #auth-error:not([hidden])")
        await page.fill("#auth-token", TOKEN)
        await page.click("#auth-submit")
        await page.wait_for_selector('#conn[data-state="live"]')
        await page.wait_for_selector(row("steps", state="CONFIGURED"))
        # the event stream, read with the token, keeps the page current
        await add(http, "steps", [{"ChunkID": "a"}, {"ChunkID": "b"}])
        await page.wait_for_selector(row("steps", state="SUCCEEDED", succeeded=2))
        kept = await page.evaluate("sessionStorage.getItem('wiz-executor-token')")
        assert kept == TOKEN
        # the tab keeps it: a reload does not ask again
        refusals = [e for e in errors if "401" in e]
        assert refusals
        await page.reload()
        await page.wait_for_selector('#conn[data-state="live"]')
        await page.wait_for_selector(row("steps", state="SUCCEEDED"))
        assert await page.is_hidden("#auth")
        assert [e for e in errors if "401" in e] == refusals  # no new 401
    assert not_about_the_token(errors) == []


async def test_a_page_of_another_origin_cannot_drive_the_executor(tmp_path: Path) -> None:
    """A page served from one origin (here, another executor's dashboard, on another
    port) sends the POSTs any web page may send without a CORS preflight; the
    executor refuses them and nothing changes. Its own page's requests still pass."""
    async with (
        live_server(Settings(data_dir=tmp_path / "a")) as (page_url, _),
        live_server(Settings(data_dir=tmp_path / "b")) as (target, _),
        httpx.AsyncClient(base_url=target) as http,
        browser_page() as (page, errors),
    ):
        await page.goto(page_url + "/")
        await page.wait_for_selector('#conn[data-state="live"]')
        attack = """async (target) => {
            const send = (path, body) => fetch(target + path, {
                method: "POST", mode: "no-cors", body,
                headers: {"Content-Type": "text/plain"}});
            await send("/processors/noop/runs/pwned/config", "{}");
            await send("/processors/noop/runs/pwned/data", '{"ChunkID":"x"}');
        }"""
        await page.evaluate(attack, target)
        assert (await http.get("/processors/noop/runs")).json() == []
        refused = [e for e in errors if e.startswith("403 ") and target in e]
        assert len(refused) == 2, errors
        # the page's own origin may POST to its executor
        status = await page.evaluate(
            """async () => (await fetch("processors/noop/runs/mine/config",
                {method: "POST", body: "{}"})).status"""
        )
        assert status == 200
        # Chromium logs each refusal too; nothing else went wrong
        logged = [e for e in errors if "status of 403" in e]
        assert len(logged) == 2, errors
        errors[:] = [e for e in errors if e not in refused and e not in logged]
    assert errors == []
