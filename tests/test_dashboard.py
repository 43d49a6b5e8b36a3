"""The dashboard page, in a real headless Chromium against a live server.

Debian's `chromium` is driven by Playwright (never `playwright install`: the browser
comes from apt, through `make browser`). Without it the tests skip and say why.
The page is watched through data attributes it keeps on each row, so the tests wait for
what a person would see ("this run shows 4 of 4 succeeded") rather than for time.

Set WIZ_DASHBOARD_SCREENSHOT=docs/dashboard.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import live_server, wait_for
from wiz_executor import Settings
from wiz_executor.api import DataChunkState

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is a dev dependency: pip install -e '.[dev]'"
)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="no chromium browser: `make browser` installs Debian's (apt-get install chromium)",
)

Page = Any  # playwright.async_api.Page (imported lazily above)


@asynccontextmanager
async def browser_page() -> AsyncIterator[tuple[Page, list[str]]]:
    """A page in a fresh headless Chromium, and a list of what went wrong in it: errors
    its scripts raised or logged, and requests the server refused."""
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 860})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            yield page, errors
        finally:
            await browser.close()


async def configure(http: httpx.AsyncClient, run: str, chunks: int, workers: int = 0) -> None:
    body = {"ExpectedData": {"NumChunks": chunks}, "ExecutorConfig": {"MaxWorkers": workers}}
    resp = await http.post(f"/processors/noop/runs/{run}/config", json=body)
    assert resp.status_code == 200, resp.text


async def add(http: httpx.AsyncClient, run: str, chunks: list[dict[str, Any]]) -> None:
    resp = await http.post(f"/processors/noop/runs/{run}/data", json=chunks)
    assert resp.status_code == 200, resp.text


def row(run: str, **attrs: object) -> str:
    """CSS selector of a run's row showing the given state and chunk counts."""
    return f'tr.run[data-run="noop/{run}"]' + "".join(
        f'[data-{name}="{value}"]' for name, value in attrs.items()
    )


async def open_dashboard(page: Page, url: str) -> None:
    await page.goto(url + "/")
    await page.wait_for_selector('#conn[data-state="live"]')


async def test_dashboard_shows_a_run_progress_to_succeeded(settings: Settings) -> None:
    async with (
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        await open_dashboard(page, url)
        assert await page.title() == "wiz executor"
        await configure(http, "steps", 4)
        # the run appears without a reload, from its `run` event
        await page.wait_for_selector(row("steps", state="CONFIGURED"))
        await add(http, "steps", [{"ChunkID": "a"}, {"ChunkID": "b"}])
        await page.wait_for_selector(row("steps", state="RUNNING", succeeded=2, waiting=0))
        text = await page.inner_text(row("steps") + " .bar-text")
        assert text.startswith("2 of 4 done")
        await add(http, "steps", [{"ChunkID": "c"}, {"ChunkID": "d"}])
        await page.wait_for_selector(row("steps", state="SUCCEEDED", succeeded=4, failed=0))
        width = await page.get_attribute(row("steps") + " .bar .succeeded", "style")
        assert width == "width:100%"
        badge = await page.inner_text(row("steps") + " .badge")
        assert badge == "SUCCEEDED"
        # executor-wide cards come from /healthz
        await page.wait_for_function(
            "document.getElementById('chunks-succeeded').textContent === '4'"
        )
        assert await page.inner_text("#workers-max") == str(settings.max_workers)
    assert errors == []


async def test_dashboard_shows_a_failed_chunk_and_its_error(settings: Settings) -> None:
    async with (
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "etl", 3)
        await open_dashboard(page, url)
        await page.click(row("etl"))
        await page.wait_for_selector("#detail:not([hidden])")
        assert await page.inner_text("#detail-title") == "etl"
        await add(
            http,
            "etl",
            [
                {"ChunkID": "ok-1"},
                {"ChunkID": "broken", "RawData": {"Fail": True}},
                {"ChunkID": "ok-2"},
            ],
        )
        await page.wait_for_selector(row("etl", state="ERRORED", failed=1, succeeded=2))
        failed = 'tr.chunk[data-chunk="broken"][data-state="FAILED"]'
        await page.wait_for_selector(failed)
        error = await page.inner_text(failed + " td.chunk-error")
        assert error == "noop was asked to fail chunk 'broken' (Fail=true)"
        # failed chunks are listed first, and the filter narrows the table to them
        first = await page.get_attribute("#chunk-rows tr.chunk", "data-chunk")
        assert first == "broken"
        await page.click('.filters button[data-filter="FAILED"]')
        await page.wait_for_function(
            "document.querySelectorAll('#chunk-rows tr.chunk').length === 1"
        )
        # a deep link opens the same run
        await page.goto(url + "/#run=noop/etl")
        await page.wait_for_selector(failed)
    assert errors == []


async def test_the_run_panel_reads_a_page_not_the_whole_run(settings: Settings) -> None:
    async with (
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "big", 0)
        await add(http, "big", [{"ChunkID": f"c{i:04d}"} for i in range(1200)])
        await add(http, "big", [{"ChunkID": "bad", "RawData": {"Fail": True}}])
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/data" in r.url else None)
        await open_dashboard(page, url)
        await page.wait_for_selector(row("big", succeeded=1200, failed=1))
        await page.click(row("big"))
        rows = "document.querySelectorAll('#chunk-rows tr.chunk').length"
        await page.wait_for_function(f"{rows} === 500")
        assert asked, "the run panel asked for no data"
        assert all("/runs/big/data?" in u and "limit=500" in u for u in asked), asked
        # "more" reads the next page, where the first one ended
        await page.click("#chunk-more")
        await page.wait_for_function(f"{rows} === 1000")
        assert "after=c0499" in asked[-1]
        # a filter is asked of the server, which finds the one FAILED chunk far down
        await page.click('.filters button[data-filter="FAILED"]')
        await page.wait_for_selector('tr.chunk[data-chunk="bad"][data-state="FAILED"]')
        assert "state=FAILED" in asked[-1]
        assert not any(u.endswith("/data") for u in asked)  # never the whole run
    assert errors == []


async def test_dashboard_screenshot_of_a_busy_executor(settings: Settings, tmp_path: Path) -> None:
    """A run in progress, a finished one and a failed one, with the failed one opened."""
    async with (
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "thumbnails", 8)
        await add(http, "thumbnails", [{"ChunkID": f"img-{i:03}"} for i in range(8)])
        await configure(http, "nightly-etl", 12)
        await add(
            http,
            "nightly-etl",
            [
                {"ChunkID": f"part-{i:02}", "RawData": {"Fail": True} if i in (3, 8) else {"n": i}}
                for i in range(12)
            ],
        )
        await configure(http, "resize-2026-11", 40, workers=4)
        await add(http, "resize-2026-11", [{"ChunkID": f"photo-{i:03}"} for i in range(24)])
        # ten slow chunks: four take the run's workers, six wait for them
        slow = {"SleepMs": 600_000}
        await add(
            http,
            "resize-2026-11",
            [{"ChunkID": f"photo-{i:03}", "RawData": slow} for i in range(24, 34)],
        )

        await open_dashboard(page, url)
        await page.wait_for_selector(
            row("resize-2026-11", state="RUNNING", succeeded=24, running=4, waiting=6)
        )
        await page.wait_for_selector(row("nightly-etl", state="ERRORED", failed=2))
        await page.wait_for_selector(row("thumbnails", state="SUCCEEDED"))
        await page.click(row("nightly-etl"))
        await page.wait_for_selector('tr.chunk[data-chunk="part-08"] td.chunk-error')
        await page.wait_for_function("document.getElementById('workers-busy').textContent === '4'")
        assert await page.inner_text("#queue-depth") == "6"

        shot = tmp_path / "dashboard.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes().startswith(b"\x89PNG")
        target = os.environ.get("WIZ_DASHBOARD_SCREENSHOT")
        if target:
            shutil.copyfile(shot, target)
        assert errors == []
        # the slow chunks are cancelled rather than left for the shutdown grace period
        assert (await http.delete("/processors/noop/runs/resize-2026-11")).status_code == 200


async def test_retry_failures_asks_first_then_queues_the_failed_chunks(
    settings: Settings,
) -> None:
    """The button shows on a run with failures; dismissing the confirmation sends
    nothing, accepting it retries the run's failed chunks (noop's `Fail` fails again)."""
    async with (
        live_server(settings) as (url, executor),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "ok", 1)
        await add(http, "ok", [{"ChunkID": "fine"}])
        await configure(http, "etl", 2)
        await add(http, "etl", [{"ChunkID": "fine"}, {"ChunkID": "bad", "RawData": {"Fail": True}}])
        await open_dashboard(page, url)
        await page.wait_for_selector(row("ok", state="SUCCEEDED"))
        await page.click(row("ok"))
        await page.wait_for_selector("#detail:not([hidden])")
        assert await page.is_hidden("#retry-failures")  # nothing failed: no button

        await page.wait_for_selector(row("etl", state="ERRORED", failed=1))
        await page.click(row("etl"))
        await page.wait_for_selector("#retry-failures:not([hidden])")
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/retry") else None)
        dialogs: list[str] = []

        async def dismiss(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()

        page.once("dialog", dismiss)
        await page.click("#retry-failures")
        assert dialogs == [
            "Retry the 1 failed chunk of run etl? They are queued and run (or sent) again."
        ]
        assert asked == []

        async def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        await page.click("#retry-failures")
        await page.wait_for_selector('#retry-note[data-done="ok"]')
        assert await page.inner_text("#retry-note") == "1 chunk and 0 deliveries queued again"
        assert len(asked) == 1
        assert asked[0].endswith("/processors/noop/runs/etl/retry")
        # it ran again (and failed again, as noop's Fail does)
        totals = executor.runs.finished_totals["noop"]
        await wait_for(lambda: totals[DataChunkState.FAILED] == 2, what="the chunk to run again")
        await page.wait_for_selector(row("etl", state="ERRORED", failed=1))
    assert errors == []
