"""Two-step pipelines over real HTTP: outputs travel downstream as FILESYSTEM_REF chunks."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import live_server, wait_run_done
from processors._servers import FixtureHTTP
from processors.conftest import Repos
from wiz_executor import Settings


async def configure(
    http: httpx.AsyncClient, proc: str, run: str, processor: Any, downstream: list[Any] | None
) -> None:
    body: dict[str, Any] = {"ExpectedData": {"NumChunks": 1}, "Processor": processor}
    if downstream:
        body["ExecutorConfig"] = {"SendDownstream": True, "DownstreamLocations": downstream}
    resp = await http.post(f"/processors/{proc}/runs/{run}/config", json=body)
    assert resp.status_code == 200, resp.text


async def output_of(http: httpx.AsyncClient, proc: str, run: str) -> dict[str, Any]:
    info = await wait_run_done(http, proc, run, 20)
    out = (await http.get(f"/processors/{proc}/runs/{run}/data")).json()["Out"]
    assert info["CurrentState"] == "SUCCEEDED", out
    assert len(out) == 1
    return dict(out[0])


async def test_get_feeds_scrape_and_ls(settings: Settings, web: FixtureHTTP) -> None:
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        host = url.removeprefix("http://")
        scraper = {"items": {"selector": "li.item", "values": {"id": "data-id", "label": "text"}}}
        await configure(http, "scrape", "s", {"scraper": scraper}, None)
        await configure(http, "ls", "l", {}, None)
        downstream = [
            {"Hostname": host, "ProcID": "scrape", "RunID": "s"},
            {"Hostname": host, "ProcID": "ls", "RunID": "l"},
        ]
        await configure(http, "get", "g", {"URL": web.url("/files/page.html")}, downstream)
        resp = await http.post("/processors/get/runs/g/data", json={"ChunkID": "page"})
        assert resp.status_code == 200, resp.text

        downloaded = await output_of(http, "get", "g")
        scraped = await output_of(http, "scrape", "s")
        listed = await output_of(http, "ls", "l")

    assert scraped["RawData"] == {
        "items": [{"id": "1", "label": "One"}, {"id": "2", "label": "Two"}]
    }
    assert scraped["AssociatedChunkID"] == downloaded["ChunkID"]
    assert [(e["Name"], e["Size"], e["IsDir"]) for e in listed["RawData"]] == [
        ("page.html", downloaded["RawData"]["Size"], False)
    ]


async def test_git_feeds_a_folder_to_ls(settings: Settings, repos: Repos) -> None:
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        host = url.removeprefix("http://")
        await configure(http, "ls", "l", {"Recursive": False}, None)
        downstream = [{"Hostname": host, "ProcID": "ls", "RunID": "l"}]
        await configure(http, "git", "g", {"URL": repos.bare.as_uri()}, downstream)
        resp = await http.post("/processors/git/runs/g/data", json={"ChunkID": "clone"})
        assert resp.status_code == 200, resp.text

        cloned = await output_of(http, "git", "g")
        listed = await output_of(http, "ls", "l")

    assert cloned["RawData"]["Commit"] == repos.main_commits[-1]
    entries = {e["Name"]: e["IsDir"] for e in listed["RawData"]}
    assert entries == {".git": True, "README.md": False, "src": True, "v3.txt": False}
