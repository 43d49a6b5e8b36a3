"""`scrape` through the HTTP API: jsonscrape's configuration against the fixture site."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from processors._servers import FixtureHTTP
from processors.conftest import Fixtures, failed_with, run_one
from wiz_executor import Settings
from wiz_executor.processors.scrape import Extractor, extract

TITLES = {"titles": {"selector": "h1.title", "values": {"text": "text"}}}


def site_config(web: FixtureHTTP, depth: int, **colly: Any) -> dict[str, Any]:
    return {
        "config": {"Sites": [web.url("/site/")], "Backoff": 0.01},
        "colly": {"MaxDepth": depth, "AllowedDomains": ["127.0.0.1"], **colly},
        "scraper": TITLES,
    }


def titles(out: dict[str, Any]) -> list[str]:
    assert out["State"] == "SUCCEEDED", out
    return [row["text"] for row in out["RawData"]["titles"]]


async def test_start_pages_only_at_depth_one(client: httpx.AsyncClient, web: FixtureHTTP) -> None:
    config = site_config(web, 1)
    config["scraper"] = {
        **TITLES,
        "items": {"selector": "li.item a", "values": {"name": "text", "id": "data-id"}},
    }
    out = await run_one(client, "scrape", config)
    assert out["Format"] == "RAW"
    assert out["RawData"] == {
        "titles": [{"text": "Fixture index"}],
        "items": [
            {"name": "Page A", "id": "1"},
            {"name": "Page B", "id": "2"},
            {"name": "Dead link", "id": ""},  # a missing attribute is "", as in Go
        ],
    }


async def test_crawl_follows_links_inside_allowed_domains(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    before = len(web.seen("/site/external.html"))
    out = await run_one(client, "scrape", site_config(web, 2))
    # index, then the pages it links to, breadth first; the dead link is skipped, the
    # binary file is not parsed, and localhost is another domain than 127.0.0.1.
    assert titles(out) == ["Fixture index", "Page A", "Page B"]
    assert len(web.seen("/site/external.html")) == before
    out = await run_one(client, "scrape", site_config(web, 3), run="deeper")
    assert titles(out) == ["Fixture index", "Page A", "Page B", "Deep"]


async def test_max_pages_bounds_an_unlimited_crawl(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    config = site_config(web, 0)
    config["config"]["MaxPages"] = 2
    assert titles(await run_one(client, "scrape", config)) == ["Fixture index", "Page A"]


async def test_any_domain_when_none_is_listed(client: httpx.AsyncClient, web: FixtureHTTP) -> None:
    config = site_config(web, 2)
    config["colly"]["AllowedDomains"] = []
    assert "External" in titles(await run_one(client, "scrape", config))


async def test_chunk_url_replaces_the_sites(client: httpx.AsyncClient, web: FixtureHTTP) -> None:
    config = site_config(web, 1)
    out = await run_one(client, "scrape", config, {"RawData": web.url("/site/b.html")})
    assert titles(out) == ["Page B"]
    out = await run_one(
        client, "scrape", config, {"RawData": {"URL": web.url("/site/a.html")}}, run="r2"
    )
    assert titles(out) == ["Page A"]


async def test_html_file_as_filesystem_ref(
    client: httpx.AsyncClient, fixtures: Fixtures, settings: Settings
) -> None:
    path = settings.data_dir / "page.html"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fixtures.files["page.html"])
    config = {
        "scraper": {"items": {"selector": "li.item", "values": {"id": "data-id", "label": "text"}}}
    }
    chunk = {
        "Format": "FILESYSTEM_REF",
        "FilesystemReference": {"Driver": "local", "Location": str(path)},
    }
    out = await run_one(client, "scrape", config, chunk)
    assert out["State"] == "SUCCEEDED", out
    assert out["RawData"] == {"items": [{"id": "1", "label": "One"}, {"id": "2", "label": "Two"}]}


async def test_bad_selector_in_the_run_is_a_400(client: httpx.AsyncClient) -> None:
    config = {"scraper": {"x": {"selector": "div > > [", "values": {"t": "text"}}}}
    resp = await client.post("/processors/scrape/runs/bad/config", json={"Processor": config})
    assert resp.status_code == 400
    assert "is not valid CSS" in resp.json()["value"]


async def test_bad_selector_in_a_chunk_fails_it(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    override = {"scraper": {"x": {"selector": "a[", "values": {"t": "text"}}}}
    out = await run_one(client, "scrape", site_config(web, 1), {"RawData": override})
    failed_with(out, "chunk overrides an invalid configuration", "'a[' is not valid CSS")


async def test_unreadable_start_page_fails(client: httpx.AsyncClient, web: FixtureHTTP) -> None:
    config = site_config(web, 1)
    config["config"]["Sites"] = [web.url("/site/missing.html")]
    out = await run_one(client, "scrape", config)
    failed_with(out, "scrape could not read", "HTTP 404")


async def test_a_failed_start_page_stops_the_other_fetches(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    # One start page fails at once while another is still being read: the chunk fails,
    # and the read of the slow page must end with it, not go on as an orphan task
    # (retrying on a closed client) after the chunk is over.
    config = site_config(web, 1)
    config["config"]["Sites"] = [web.url("/slow/page.html"), web.url("/status/404")]
    out = await run_one(client, "scrape", config)
    failed_with(out, "scrape could not read", "HTTP 404")
    left = [t for t in asyncio.all_tasks() if "_Crawl._read" in repr(t.get_coro())]
    assert left == []


async def test_start_page_outside_allowed_domains(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    config = site_config(web, 1, AllowedDomains=["example.org"])
    failed_with(await run_one(client, "scrape", config), "outside colly.AllowedDomains")


async def test_a_redirect_cannot_leave_the_allowed_domains(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    # localhost is another domain than 127.0.0.1: the redirect must not be followed
    # there (colly checks every request, redirects included).
    elsewhere = f"http://localhost:{web.port}/site/external.html"
    before = len(web.seen("/site/external.html"))
    config = site_config(web, 1)
    config["config"]["Sites"] = [web.url(f"/goto?to={elsewhere}")]
    out = await run_one(client, "scrape", config)
    failed_with(out, "scrape could not read", "redirected to", "outside colly.AllowedDomains")
    # A linked page that redirects out is skipped, as a dead link is.
    config = site_config(web, 2)
    config["config"]["Sites"] = [web.url("/site/b.html")]
    out = await run_one(client, "scrape", config, run="linked")
    assert titles(out) == ["Page B"]
    assert len(web.seen("/site/external.html")) == before


async def test_nothing_to_scrape_or_extract(client: httpx.AsyncClient, web: FixtureHTTP) -> None:
    failed_with(await run_one(client, "scrape", {"scraper": TITLES}), "no page to read")
    out = await run_one(client, "scrape", {"config": {"Sites": [web.url("/site/")]}}, run="r2")
    failed_with(out, "nothing to extract")


async def test_file_outside_the_sandbox(
    client: httpx.AsyncClient, outside: Path, settings: Settings
) -> None:
    chunk = {
        "Format": "FILESYSTEM_REF",
        "FilesystemReference": {"Driver": "local", "Location": str(outside / "secret.txt")},
    }
    failed_with(await run_one(client, "scrape", {"scraper": TITLES}, chunk), "outside")
    config = {"config": {"Sites": [(outside / "secret.txt").as_uri()]}, "scraper": TITLES}
    failed_with(await run_one(client, "scrape", config, run="r2"), "outside")


def test_extract_resolves_links_and_reads_text() -> None:
    html = '<p class="x">  A <b>bold</b> move </p><a href="../up.html#f">up</a>'
    scraper = {"p": Extractor(selector="p.x", values={"t": "text", "missing": "title"})}
    found, links = extract(html, "http://h/a/b/page.html", scraper, want_links=True)
    assert found == {"p": [{"t": "A bold move", "missing": ""}]}
    assert links == ["http://h/a/up.html#f"]
    assert extract(html.encode(), "http://h/", scraper, want_links=False)[1] == []
