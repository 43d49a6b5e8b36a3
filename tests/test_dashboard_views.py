"""The dashboard's views for issue #13, in a real headless Chromium (see test_dashboard
for how it is driven): a run's timing, rates and chart; failures visible at any scale;
a chunk's detail and its download; cancel and delete behind a confirmation; the
pipeline graph; a 100,000-chunk run read page by page while events are batched.

Set WIZ_DASHBOARD_SCREENSHOTS=docs (`make screenshots`) to refresh the screenshots of
each view in the docs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx

from _wiz_process import free_port
from conftest import live_server, wait_for
from test_dashboard import add, browser_page, configure, open_dashboard, pytestmark, row  # noqa: F401
from wiz_executor import DataChunkState, Executor, Settings
from wiz_executor.history import SampleRing
from wiz_executor.runs import CANCELLED

TOKEN = "views-token-3"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Page = Any
_S = DataChunkState.SUCCEEDED
_FAILED = DataChunkState.FAILED
_NOW = "2026-11-28T07:00:00Z"
NONE = "\N{EN DASH}"  # what the page shows for a value not known


async def shoot(page: Page, name: str, tmp_path: Path, selector: str | None = None) -> None:
    """A screenshot of the page (or of one element), kept in the docs when asked."""
    shot = tmp_path / name
    if selector is None:
        await page.screenshot(path=str(shot), full_page=True)
    else:
        await page.locator(selector).screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")
    folder = os.environ.get("WIZ_DASHBOARD_SCREENSHOTS")
    if folder:
        shutil.copyfile(shot, Path(folder) / name)


def fake_history(
    executor: Executor, proc: str, run_id: str, shape: list[tuple[int, int, int]]
) -> None:
    """Give a run a ring of past samples (finished, queued, running), one a second up to
    now, as the executor's sampler would have taken them: the chart has something to
    draw without the test waiting minutes."""
    run = executor.runs.get(proc, run_id)
    ring = SampleRing()
    now = time.time()
    for i, (finished, queued, running) in enumerate(shape):
        ring.add(now - len(shape) + i, finished, queued, running)
    run.history = ring
    run.started = now - len(shape) - 5


async def test_a_run_shows_its_rate_eta_times_and_a_chart(
    settings: Settings, tmp_path: Path
) -> None:
    async with (
        live_server(settings) as (url, executor),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "resize", 400, workers=4)
        await add(http, "resize", [{"ChunkID": f"img-{i:03}"} for i in range(240)])
        slow = {"SleepMs": 600_000}
        await add(
            http, "resize", [{"ChunkID": f"img-{i:03}", "RawData": slow} for i in range(240, 300)]
        )
        await wait_for(lambda: executor.runs.get("noop", "resize").counts[_S] == 240)
        # 240 finished over the last four minutes, at a rate that came and went, the
        # queue draining as they did
        rates = [1 + 0.7 * math.sin(i / 23) for i in range(240)]
        done = [round(240 * sum(rates[: i + 1]) / sum(rates)) for i in range(240)]
        shape = [(d, 296 - d, 4) for d in done]
        fake_history(executor, "noop", "resize", shape)

        await open_dashboard(page, url)
        await page.wait_for_selector(row("resize", running=4, waiting=56))
        rate = await page.inner_text(row("resize") + " td.rate")
        assert rate.endswith("/s")
        await page.click(row("resize"))
        await page.wait_for_selector("#chart-rate[data-points]")
        await page.wait_for_selector("#chart-queue polyline.c-queue")
        assert int(await page.get_attribute("#chart-rate", "data-points") or 0) > 100
        assert (await page.inner_text("#stat-rate")).endswith("/s")
        assert await page.inner_text("#stat-started") != NONE
        assert await page.inner_text("#stat-ended") == "not yet"
        await page.wait_for_function("/\\d/.test(document.getElementById('stat-eta').textContent)")
        assert await page.inner_text("#stat-duration") != NONE
        # the Run's fields the page read: the API's own numbers
        body = (await http.get("/processors/noop/runs/resize")).json()
        assert body["ChunksPerSecond"] > 0
        assert body["EtaSeconds"] > 0
        await shoot(page, "dashboard-run.png", tmp_path)
        assert errors == []
        assert (await http.delete("/processors/noop/runs/resize")).status_code == 200


async def test_21_failures_of_20000_are_visible(settings: Settings, tmp_path: Path) -> None:
    async with (
        live_server(settings) as (url, executor),
        httpx.AsyncClient(base_url=url, timeout=60) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "bulk", 20_000)
        failing = set(range(0, 20_000, 997)[:21])
        for start in range(0, 20_000, 5_000):
            await add(
                http,
                "bulk",
                [
                    {"ChunkID": f"c{i:05}", "RawData": {"Fail": True} if i in failing else None}
                    for i in range(start, start + 5_000)
                ],
            )
        await open_dashboard(page, url)
        await page.wait_for_selector(row("bulk", state="ERRORED", failed=21, succeeded=19_979))
        marker = row("bulk") + " .bar .failed.marker"
        box = await page.locator(marker).bounding_box()
        assert box is not None
        assert box["width"] >= 3  # 0.1 % of the bar, drawn at least 3 px wide
        # The list and the detail redraw from their own polls: wait for the final count
        # in each (a wait that times out fails), as a poll mid-run may still say 20.
        await page.wait_for_selector(marker + '[title="21 failed"]')
        await page.wait_for_selector(row("bulk") + ' .fail-badge:text-is("21 failed")')
        await page.click(row("bulk"))
        await page.wait_for_selector('#detail-summary .fail-badge:text-is("21 failed")')
        await shoot(page, "dashboard-failures.png", tmp_path, row("bulk"))
        del executor
    assert errors == []


async def test_a_chunk_s_detail_and_its_download_with_the_token(
    settings: Settings, tmp_path: Path
) -> None:
    async with (
        live_server(replace(settings, token=TOKEN)) as (url, _),
        httpx.AsyncClient(base_url=url, headers=AUTH) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "etl", 3)
        big = {"rows": [{"id": i, "text": "lorem ipsum " * 4} for i in range(600)]}
        await add(
            http,
            "etl",
            [
                {"ChunkID": "small", "RawData": {"city": "Lyon", "n": 3}},
                {"ChunkID": "big", "RawData": big},
                {"ChunkID": "broken", "RawData": {"Fail": True}},
            ],
        )
        await page.goto(url + "/")
        await page.fill("#auth-token", TOKEN)
        await page.click("#auth-submit")
        await page.wait_for_selector(row("etl", state="ERRORED", failed=1))
        await page.click(row("etl"))

        await page.click('tr.chunk[data-chunk="small"]')
        await page.wait_for_selector("#chunk-view:not([hidden]) #chunk-state")
        assert await page.inner_text("#chunk-title") == "small"
        text = await page.inner_text("#chunk-input pre.json")
        assert text == '{\n  "city": "Lyon",\n  "n": 3\n}'  # pretty-printed
        assert await page.inner_text("#chunk-output pre.json") == text  # noop echoes it
        # every field of each attempt, whatever they are
        headers = await page.locator("#chunk-attempts th").all_inner_texts()
        assert {"Attempt", "Start", "End", "Outcome", "Host", "PID", "Worker"} <= set(headers)
        assert "not sent downstream" in (await page.inner_text("#chunk-delivery")).lower()
        await page.keyboard.press("Escape")
        await page.wait_for_selector("#chunk-view", state="hidden")

        await page.click('tr.chunk[data-chunk="broken"]')
        await page.wait_for_selector("#chunk-error")
        assert "Fail=true" in await page.inner_text("#chunk-error")
        assert "None: the chunk is FAILED" in await page.inner_text("#chunk-output")
        await page.click("#chunk-close")

        await page.click('tr.chunk[data-chunk="big"]')
        await page.wait_for_selector('#chunk-input pre.json[data-truncated="true"]')
        shown = await page.inner_text("#chunk-input pre.json")
        assert len(shown) < 21_000
        await shoot(page, "dashboard-chunk.png", tmp_path)
        async with page.expect_download() as info:
            await page.click("#chunk-input a.download")
        download = await (await info.value).path()
        assert download is not None
        saved = await anyio.Path(download).read_text()
        assert json.loads(saved) == big  # all of it, fetched with the token
    assert [e for e in errors if "401" not in e] == []


async def test_cancel_and_delete_ask_first_and_send_the_token(settings: Settings) -> None:
    async with (
        live_server(replace(settings, token=TOKEN)) as (url, executor),
        httpx.AsyncClient(base_url=url, headers=AUTH) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "long", 0, workers=1)
        slow = {"SleepMs": 600_000}
        await add(http, "long", [{"ChunkID": f"c{i}", "RawData": slow} for i in range(5)])
        await page.goto(url + "/")
        await page.fill("#auth-token", TOKEN)
        await page.click("#auth-submit")
        await page.wait_for_selector(row("long", running=1, waiting=4))
        await page.click(row("long"))
        await page.wait_for_selector("#cancel-run:not([hidden])")
        asked: list[str] = []
        page.on(
            "request", lambda r: asked.append(f"{r.method} {r.url}") if r.method != "GET" else None
        )
        dialogs: list[str] = []

        async def answer(dialog: Any, accept: bool) -> None:
            dialogs.append(dialog.message)
            await (dialog.accept() if accept else dialog.dismiss())

        page.once("dialog", lambda d: answer(d, False))
        await page.click("#cancel-run")
        assert dialogs == [
            "Cancel run long? It takes no more chunks, and its 4 waiting chunks fail "
            "without running; running ones finish."
        ]
        assert asked == []
        page.once("dialog", lambda d: answer(d, True))
        await page.click("#cancel-run")
        await page.wait_for_selector('#retry-note[data-done="ok"]')
        assert await page.inner_text("#retry-note") == "4 waiting chunks cancelled"
        assert asked == [f"POST {url}/processors/noop/runs/long/cancel"]
        await page.wait_for_selector(row("long", running=1, waiting=0, failed=4))
        run = executor.runs.get("noop", "long")
        assert run.input_closed
        assert {c.error for c in run.order if c.error} == {CANCELLED}

        page.once("dialog", lambda d: answer(d, False))
        await page.click("#delete-run")
        assert dialogs[-1].startswith("Delete run long? Its running chunks are stopped")
        assert len(asked) == 1
        page.once("dialog", lambda d: answer(d, True))
        await page.click("#delete-run")
        await page.wait_for_selector("#detail", state="hidden")
        await page.wait_for_selector(row("long"), state="detached")
        assert asked[-1] == f"DELETE {url}/processors/noop/runs/long"
        assert (await http.get("/processors/noop/runs")).json() == []
    # (a read of the run already on its way as it was deleted may find it gone)
    gone = [e for e in errors if e.startswith("404 ") and "/runs/long" in e]
    assert [e for e in errors if "401" not in e and e not in gone] == []


async def test_the_pipeline_graph(settings: Settings, tmp_path: Path) -> None:
    away = f"127.0.0.1:{free_port()}"  # another executor (nothing listens: deliveries fail)
    async with (
        live_server(replace(settings, downstream_attempts=1)) as (url, executor),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        here = url.removeprefix("http://")

        async def run(name: str, n: int, *to: tuple[str, str]) -> None:
            body = {
                "ExpectedData": {"NumChunks": n},
                "ExecutorConfig": {
                    "SendDownstream": bool(to),
                    "DownstreamLocations": [
                        {"Hostname": host, "ProcID": "noop", "RunID": target} for host, target in to
                    ],
                },
            }
            resp = await http.post(f"/processors/noop/runs/{name}/config", json=body)
            assert resp.status_code == 200, resp.text

        await run("load", 12)
        await run("index", 12)
        await run("transform", 12, (here, "load"), (here, "index"))
        await run("extract", 12, (here, "transform"), (away, "archive"))
        await add(http, "extract", [{"ChunkID": f"doc-{i:02}"} for i in range(12)])
        await run("other", 2)  # sends nowhere: not in the graph
        await open_dashboard(page, url)
        await page.wait_for_selector("#pipeline:not([hidden])")
        await page.wait_for_selector('g.node[data-run="noop/load"][data-state="SUCCEEDED"]')
        await page.wait_for_selector('g.node[data-run="noop/extract"][data-state="ERRORED"]')
        nodes = await page.locator("g.node").evaluate_all("ns => ns.map(n => n.dataset.node)")
        assert sorted(nodes) == sorted(
            ["noop/extract", "noop/transform", "noop/load", "noop/index", f"{away}|noop/archive"]
        )
        edges = await page.locator("path.edge").evaluate_all(
            "es => es.map(e => e.dataset.from + ' > ' + e.dataset.to)"
        )
        assert sorted(edges) == sorted(
            [
                "noop/extract > noop/transform",
                f"noop/extract > {away}|noop/archive",
                "noop/transform > noop/load",
                "noop/transform > noop/index",
            ]
        )
        external = f'g.node.external[data-node="{away}|noop/archive"]'
        assert f"on {away}" in await page.locator(external).text_content() or ""
        # each node: its state and counts; left to right along the pipeline
        assert "12/12" in (await page.locator('g.node[data-run="noop/load"]').text_content() or "")
        xs = await page.evaluate(
            """() => ["extract", "transform", "load"].map((r) => document
                .querySelector(`g.node[data-run="noop/${r}"]`).getBoundingClientRect().x)"""
        )
        assert xs == sorted(xs)
        assert len(set(xs)) == 3
        await shoot(page, "dashboard-pipeline.png", tmp_path, "#pipeline")
        await shoot(page, "dashboard-runs.png", tmp_path)
        # a click on a node opens its run
        await page.click('g.node[data-run="noop/transform"]')
        await page.wait_for_selector("#detail:not([hidden])")
        assert await page.inner_text("#detail-title") == "transform"
        del executor
    assert [e for e in errors if "archive" not in e] == []


async def test_a_100000_chunk_run_is_read_by_pages_and_events_are_batched(
    settings: Settings,
) -> None:
    async with (
        live_server(replace(settings, max_pending=200_000)) as (url, executor),
        httpx.AsyncClient(base_url=url, timeout=120) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "huge", 100_000)
        await add(http, "huge", [{"ChunkID": f"c{i:06}"} for i in range(20_000)])
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/runs/huge/data" in r.url else None)
        await open_dashboard(page, url)
        await page.wait_for_selector(row("huge", succeeded=20_000))
        await page.click(row("huge"))
        rows = "document.querySelectorAll('#chunk-rows tr.chunk').length"
        await page.wait_for_function(f"{rows} === 500")
        before = await page.evaluate("({...window.wizDashboard.stats})")
        # 80,000 more stream in while the run is on display
        for start in range(20_000, 100_000, 10_000):
            await add(http, "huge", [{"ChunkID": f"c{i:06}"} for i in range(start, start + 10_000)])
        await page.wait_for_selector(row("huge", state="SUCCEEDED", succeeded=100_000))
        await wait_for(lambda: executor.runs.get("noop", "huge").finished)
        after = await page.evaluate("({...window.wizDashboard.stats})")
        events = after["events"] - before["events"]
        renders = after["renders"] - before["renders"]
        assert events >= 1000  # (the stream may drop events under load: it says so)
        assert renders * 20 < events  # redraws are batched, not one per event
        # the page still answers, and shows one page of chunks, never the whole run
        assert await page.evaluate(rows) == 500
        assert all("limit=500" in u for u in asked), asked
        assert await page.evaluate("document.getElementById('chunk-more').hidden") is False
    assert errors == []


async def test_retry_from_the_page_sends_the_token(settings: Settings) -> None:
    """The Retry button's request carries the token like every other (it was sent
    without it, and refused with a 401, on an executor with a token)."""
    async with (
        live_server(replace(settings, token=TOKEN)) as (url, executor),
        httpx.AsyncClient(base_url=url, headers=AUTH) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "etl", 1)
        await add(http, "etl", [{"ChunkID": "bad", "RawData": {"Fail": True}}])
        await page.goto(url + "/")
        await page.fill("#auth-token", TOKEN)
        await page.click("#auth-submit")
        await page.wait_for_selector(row("etl", state="ERRORED", failed=1))
        await page.click(row("etl"))
        await page.wait_for_selector("#retry-failures:not([hidden])")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#retry-failures")
        await page.wait_for_selector("#retry-note[data-done]")
        assert await page.inner_text("#retry-note") == "1 chunk and 0 deliveries queued again"
        totals = executor.runs.finished_totals["noop"]
        await wait_for(lambda: totals[_FAILED] == 2, what="the chunk to run again")
    assert [e for e in errors if "401" not in e] == []


async def test_fields_others_add_are_shown_when_present(settings: Settings) -> None:
    """Pause, waiting reasons (issue #14), a slow chunk and an attempt's node (the RAY
    work model) are built elsewhere; the page shows them when the executor sends them.
    Here the answers are given those fields on their way to the page."""
    async with (
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
        browser_page() as (page, errors),
    ):
        await configure(http, "etl", 1)
        await add(http, "etl", [{"ChunkID": "c0"}])
        waiting = {"Reason": "PAUSED", "Detail": "paused by an operator", "Since": _NOW}

        async def more_fields(route: Any) -> None:
            response = await route.fetch()
            body = await response.json()
            path = route.request.url.split("?")[0]
            if path.endswith("/runs"):
                for run in body:
                    run.update(Paused=True, Waiting=waiting)
            elif path.endswith("/runs/etl"):
                body.update(Paused=True, Waiting=waiting)
            elif "/data/input/" in path:
                body.update(Slow=True, RunningSince=_NOW)
                for attempt in body.get("Attempts") or []:
                    attempt["Node"] = "node-7"
            await route.fulfill(response=response, json=body)

        await page.route("**/processors/noop/**", more_fields)
        await page.route("**/processors/noop/runs", more_fields)
        await open_dashboard(page, url)
        await page.wait_for_selector(row("etl", state="SUCCEEDED", paused="true"))
        assert "PAUSED" in await page.inner_text(row("etl"))
        await page.click(row("etl"))
        await page.wait_for_selector("#run-waiting")
        assert "PAUSED — paused by an operator" in await page.inner_text("#run-waiting")
        await page.click('tr.chunk[data-chunk="c0"]')
        await page.wait_for_selector("#chunk-attempts th")
        headers = await page.locator("#chunk-attempts th").all_inner_texts()
        assert "Node" in headers
        assert "node-7" in await page.inner_text("#chunk-attempts")
        body = await page.inner_text("#chunk-body")
        assert "SLOW" in body
        assert "RunningSince" in body
    assert errors == []
