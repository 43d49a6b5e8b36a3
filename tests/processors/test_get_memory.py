"""A 200 MB download streams to disk: the executor's memory barely moves.

The fixture server generates the body on the fly (it holds 1 MiB, not 200 MB), and a
thread samples this process's RSS while the download runs. The server lives in the
same process, so whatever it costs is counted too: the bound is conservative.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from processors._servers import FixtureHTTP, big_sha256
from processors.conftest import run_one
from wiz_executor import Settings

SIZE = 200 * 1024 * 1024
LIMIT = 50 * 1024 * 1024


def size_of(path: str) -> int:
    return Path(path).stat().st_size


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Yields [baseline, peak]: this process's RSS before and at its highest during."""
    process = psutil.Process()
    result = [process.memory_info().rss, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            result[1] = max(result[1], process.memory_info().rss)
            done.wait(0.005)  # noqa: sleep-ok

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()


async def test_200_mb_download_in_constant_memory(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    with peak_rss() as rss:
        out = await run_one(client, "get", {"URL": web.url(f"/big/{SIZE}")}, wait=60)
    assert out["State"] == "SUCCEEDED", out
    assert out["RawData"]["Size"] == SIZE
    assert out["RawData"]["SHA256"] == big_sha256(SIZE)
    assert size_of(out["FilesystemReference"]["Location"]) == SIZE
    growth = rss[1] - rss[0]
    print(f"RSS growth during a 200 MB download: {growth / 2**20:.1f} MiB")
    assert growth < LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB during a 200 MB download"


async def test_200_mb_ranged_download_in_constant_memory(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    config = {"URL": web.url(f"/big/{SIZE}"), "Concurrent": {"Enabled": True, "Num": 4}}
    with peak_rss() as rss:
        out = await run_one(client, "get", config, wait=60)
    assert out["State"] == "SUCCEEDED", out
    assert out["RawData"]["Parts"] == 4
    assert out["RawData"]["SHA256"] == big_sha256(SIZE)
    growth = rss[1] - rss[0]
    assert growth < LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB during a ranged download"
