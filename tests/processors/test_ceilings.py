"""Ceilings the operator sets with flags, which a run may lower but never raise: a run
asking for more is a 400 at Configure naming the flag, a chunk's override asking for
more fails that chunk with the same message, and 0 means the ceiling itself. Also the
checks of paths that can be made at Configure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from processors._servers import FixtureHTTP
from processors.conftest import Fixtures, Repos, failed_with, run_one
from wiz_executor import Configuration, Data, Executor, Settings
from wiz_executor.runs import FAILED


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The processors' settings, with small ceilings that the fixtures exceed."""
    return dataclasses.replace(
        settings,
        max_download_bytes=1000,
        max_page_bytes=100,
        max_scrape_parallelism=3,
        max_ls_entries=3,
        max_chunk_timeout=60,
    )


async def configure(
    client: httpx.AsyncClient, proc: str, body: dict[str, object]
) -> httpx.Response:
    return await client.post(f"/processors/{proc}/runs/c/config", json=body)


async def refused(
    client: httpx.AsyncClient, proc: str, body: dict[str, object], *words: str
) -> None:
    resp = await configure(client, proc, body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["value"]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert (await client.get(f"/processors/{proc}/runs/c")).status_code == 404


def test_defaults_are_finite() -> None:
    defaults = Settings()
    assert defaults.max_download_bytes == 1 << 30
    assert defaults.max_page_bytes == 32 << 20
    assert defaults.max_scrape_parallelism == 8
    assert defaults.max_ls_entries == 1_000_000
    assert defaults.max_chunk_timeout == 3600
    assert defaults.default_chunk_timeout == 3600  # a run that sets none gets the ceiling


@pytest.mark.parametrize(
    "field", ["max_download_bytes", "max_page_bytes", "max_scrape_parallelism", "max_ls_entries"]
)
def test_ceilings_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(**{field: 0})


def test_the_default_chunk_timeout_may_not_pass_the_ceiling() -> None:
    with pytest.raises(ValueError, match="chunk_timeout"):
        Settings(chunk_timeout=100, max_chunk_timeout=10)
    assert Settings(chunk_timeout=10, max_chunk_timeout=100).default_chunk_timeout == 10
    assert Settings(max_chunk_timeout=None).default_chunk_timeout is None  # operator's choice


# -- get: --max-download-bytes -----------------------------------------------------------


async def test_max_bytes_above_the_ceiling_is_a_400(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    url = web.url("/files/small.txt")
    await refused(
        client,
        "get",
        {"Processor": {"URL": url, "MaxBytes": 10_000_000_000}},
        "Processor.MaxBytes 10000000000 is above the executor's --max-download-bytes (1000)",
    )


async def test_max_bytes_below_the_ceiling_is_kept(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    out = await run_one(client, "get", {"URL": web.url("/files/small.txt"), "MaxBytes": 5})
    failed_with(out, "more than MaxBytes=5")


async def test_max_bytes_zero_is_the_ceiling(client: httpx.AsyncClient, web: FixtureHTTP) -> None:
    out = await run_one(client, "get", {"URL": web.url("/files/data.bin")})
    failed_with(out, "more than MaxBytes=1000", "--max-download-bytes")
    out = await run_one(client, "get", {"URL": web.url("/files/small.txt")}, run="small")
    assert out["State"] == "SUCCEEDED", out


async def test_a_chunk_asking_for_more_download_fails(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    chunk = {"RawData": {"URL": web.url("/files/small.txt"), "MaxBytes": 5000}}
    out = await run_one(client, "get", {}, chunk)
    failed_with(out, "Processor.MaxBytes 5000 is above the executor's --max-download-bytes (1000)")


# -- scrape: --max-page-bytes and --max-scrape-parallelism -------------------------------

SCRAPER = {"titles": {"selector": "h1", "values": {"text": "text"}}}


async def test_page_bytes_and_parallelism_above_the_ceilings_are_400s(
    client: httpx.AsyncClient,
) -> None:
    await refused(
        client,
        "scrape",
        {"Processor": {"config": {"MaxPageBytes": 101}, "scraper": SCRAPER}},
        "Processor.config.MaxPageBytes 101 is above the executor's --max-page-bytes (100)",
    )
    await refused(
        client,
        "scrape",
        {"Processor": {"config": {"Parallelism": 4}, "scraper": SCRAPER}},
        "Processor.config.Parallelism 4 is above the executor's --max-scrape-parallelism (3)",
    )


async def test_page_bytes_zero_and_default_are_within_the_ceiling(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    """The page fixture is over 100 bytes: the default (10 MiB, above this executor's
    ceiling) and 0 both read as the ceiling, and the page is refused for it."""
    for i, sites in enumerate(({}, {"MaxPageBytes": 0})):
        config = {"config": {"Sites": [web.url("/files/page.html")], **sites}, "scraper": SCRAPER}
        out = await run_one(client, "scrape", config, run=f"r{i}")
        failed_with(out, "config.MaxPageBytes=100")
    config = {"config": {"Sites": [web.url("/files/page.html")], "MaxPageBytes": 50}}
    out = await run_one(client, "scrape", {**config, "scraper": SCRAPER}, run="small")
    failed_with(out, "config.MaxPageBytes=50")


async def test_a_chunk_asking_for_bigger_pages_fails(
    client: httpx.AsyncClient, web: FixtureHTTP
) -> None:
    chunk = {"RawData": {"URL": web.url("/files/page.html"), "config": {"MaxPageBytes": 5000}}}
    out = await run_one(client, "scrape", {"scraper": SCRAPER}, chunk)
    failed_with(out, "Processor.config.MaxPageBytes 5000 is above", "--max-page-bytes (100)")


# -- ls: --max-ls-entries ----------------------------------------------------------------


def _five_files(data_dir: Path) -> None:
    folder = data_dir / "five"
    folder.mkdir(parents=True)
    for i in range(5):
        (folder / f"{i}.txt").write_text(str(i))


async def test_ls_entries_above_the_ceiling(client: httpx.AsyncClient, settings: Settings) -> None:
    await refused(
        client,
        "ls",
        {"Processor": {"Dir": "five", "MaxEntries": 4}},
        "Processor.MaxEntries 4 is above the executor's --max-ls-entries (3)",
    )
    _five_files(settings.data_dir)
    # The default (100000) and 0 are the ceiling; less is kept.
    for i, config in enumerate(({"Dir": "five"}, {"Dir": "five", "MaxEntries": 0})):
        failed_with(await run_one(client, "ls", config, run=f"r{i}"), "MaxEntries=3")
    out = await run_one(client, "ls", {"Dir": "five", "MaxEntries": 2}, run="two")
    failed_with(out, "MaxEntries=2")
    out = await run_one(client, "ls", {"Dir": "five"}, {"RawData": {"MaxEntries": 10}}, run="ch")
    failed_with(out, "Processor.MaxEntries 10 is above the executor's --max-ls-entries (3)")


# -- chunk time: --max-chunk-timeout and noop's SleepMs ----------------------------------


async def test_chunk_timeout_above_the_ceiling_is_a_400(client: httpx.AsyncClient) -> None:
    await refused(
        client,
        "noop",
        {"ExecutorConfig": {"ChunkTimeout": 61}},
        "ExecutorConfig.ChunkTimeout 61 is above the executor's --max-chunk-timeout (60)",
    )
    assert (await configure(client, "noop", {"ExecutorConfig": {"ChunkTimeout": 60}})).is_success


async def test_a_run_without_a_timeout_gets_the_executors(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_chunk_timeout=0.05)
    async with Executor(settings) as executor:
        executor.configure("noop", "r", Configuration.model_validate({"Processor": {}}))
        executor.add_data("noop", "r", Data(ChunkID="c", RawData={"SleepMs": 60_000}))
        executor.end_of_input("noop", "r")
        run = await executor.wait("noop", "r", timeout=20)
        chunk = run.chunks["c"]
        assert chunk.state is FAILED
        assert chunk.error == "processor did not finish the chunk within 0.05 s (timeout)"


async def test_sleep_ms_is_bounded(client: httpx.AsyncClient) -> None:
    resp = await configure(client, "noop", {"Processor": {"SleepMs": 2**70}})
    assert resp.status_code == 400, resp.text
    assert "SleepMs" in resp.json()["value"]
    resp = await configure(client, "noop", {"Processor": {"SleepMs": 3_600_001}})
    assert resp.status_code == 400, resp.text


# -- paths checked at Configure ----------------------------------------------------------


async def test_an_ls_dir_outside_the_roots_is_a_400(
    client: httpx.AsyncClient, outside: Path, fixtures: Fixtures
) -> None:
    for i, path in enumerate((str(outside), "../outside", "/")):
        resp = await client.post(
            f"/processors/ls/runs/r{i}/config", json={"Processor": {"Dir": path}}
        )
        assert resp.status_code == 400, (path, resp.text)
        assert "--allow-root" in resp.json()["value"]
    resp = await configure(client, "ls", {"Processor": {"Dir": str(fixtures.files_root)}})
    assert resp.status_code == 200, resp.text


async def test_a_local_git_path_outside_the_roots_is_a_400(
    client: httpx.AsyncClient, outside: Path, repos: Repos
) -> None:
    for i, url in enumerate((str(outside), outside.as_uri(), "../../etc")):
        resp = await client.post(
            f"/processors/git/runs/r{i}/config", json={"Processor": {"URL": url}}
        )
        assert resp.status_code == 400, (url, resp.text)
        assert "--allow-root" in resp.json()["value"]
    for url in (str(repos.bare), repos.bare.as_uri(), "https://example.invalid/x.git"):
        resp = await client.post(
            f"/processors/git/runs/{len(url)}/config", json={"Processor": {"URL": url}}
        )
        assert resp.status_code == 200, (url, resp.text)
