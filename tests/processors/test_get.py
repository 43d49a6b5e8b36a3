"""`get` through the HTTP API, against the local fixture web server."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import httpx

from conftest import wait_for, wait_run_done
from processors._servers import LAST_MODIFIED, FixtureHTTP, etag_of
from processors.conftest import Fixtures, failed_with, files_in, read_json, run_one, tree
from wiz_executor import Executor, Settings
from wiz_executor.processors.get import name_from_url


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def fast(**config: Any) -> dict[str, Any]:
    """A config whose retries do not make a failing test slow."""
    return {"Backoff": 0.01, **config}


def check_file(out: dict[str, Any], settings: Settings, body: bytes) -> Path:
    assert out["State"] == "SUCCEEDED", out
    assert out["Format"] == "FILESYSTEM_REF"
    ref = out["FilesystemReference"]
    assert ref["Driver"] == "local"
    path = Path(ref["Location"])
    assert path.is_relative_to(settings.data_dir.resolve())
    assert path.read_bytes() == body
    assert out["RawData"]["SHA256"] == sha(body)
    assert out["RawData"]["Size"] == len(body)
    return path


async def test_download_records_state(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    body = fixtures.files["data.bin"]
    out = await run_one(client, "get", {"URL": web.url("/files/data.bin")})
    path = check_file(out, settings, body)
    assert path.name == "data.bin"
    state = out["RawData"]
    assert state["ETag"] == etag_of(body)
    assert state["LastModified"] == LAST_MODIFIED
    assert state["ContentLength"] == len(body)
    assert state["URL"] == web.url("/files/data.bin")
    assert state["Parts"] == 1
    # the data dir holds the file in the chunk's own folder, and no partial file
    assert files_in(settings.data_dir) == ["get/r/c0/data.bin"]


async def test_progress_is_reported_in_bytes(
    client: httpx.AsyncClient, executor: Executor, web: FixtureHTTP, fixtures: Fixtures
) -> None:
    seen: list[tuple[int, int | None]] = []
    executor.runs.listeners.append(
        lambda run, chunk: seen.append(chunk.progress) if chunk and chunk.progress else None
    )
    out = await run_one(client, "get", {"URL": web.url("/files/data.bin")})
    assert out["State"] == "SUCCEEDED"
    size = len(fixtures.files["data.bin"])
    assert seen, "no progress was reported"
    assert seen[-1] == (size, size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


async def test_source_alias_and_chunk_overrides(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    # The run says Source (go-getter's name); one chunk overrides it with a URL string,
    # another with an object naming the file.
    resp = await client.post(
        "/processors/get/runs/r/config",
        json={
            "ExpectedData": {"NumChunks": 3},
            "Processor": {"Source": web.url("/files/small.txt")},
        },
    )
    assert resp.status_code == 200, resp.text
    chunks = [
        {"ChunkID": "a", "RawData": None},
        {"ChunkID": "b", "RawData": web.url("/files/page.html")},
        {"ChunkID": "c", "RawData": {"Source": web.url("/files/page.html"), "FileName": "x.htm"}},
    ]
    for chunk in chunks:
        assert (await client.post("/processors/get/runs/r/data", json=chunk)).status_code == 200
    assert (await wait_run_done(client, "get", "r"))["CurrentState"] == "SUCCEEDED"
    out = {
        c["AssociatedChunkID"]: c
        for c in (await client.get("/processors/get/runs/r/data")).json()["Out"]
    }
    check_file(out["a"], settings, fixtures.files["small.txt"])
    check_file(out["b"], settings, fixtures.files["page.html"])
    assert check_file(out["c"], settings, fixtures.files["page.html"]).name == "x.htm"


async def test_method_headers_and_body_are_sent(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    config = {
        "URL": web.url("/echo?q=1"),
        "Method": "POST",
        "Headers": {"X-Wiz": "yes"},
        "Body": {"hello": "world"},
        "FileName": "echo.json",
    }
    out = await run_one(client, "get", config)
    assert out["State"] == "SUCCEEDED", out
    echo = read_json(out["FilesystemReference"]["Location"])
    assert echo["method"] == "POST"
    assert echo["headers"]["x-wiz"] == "yes"
    assert echo["headers"]["content-type"] == "application/json"
    assert json.loads(echo["body"]) == {"hello": "world"}
    assert echo["query"] == {"q": ["1"]}


async def test_redirect_is_followed_and_recorded(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    out = await run_one(client, "get", {"URL": web.url("/redirect/page.html")})
    check_file(out, settings, fixtures.files["page.html"])
    assert out["RawData"]["FinalURL"] == web.url("/files/page.html")


async def test_concurrent_ranged_download_is_byte_identical(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    url = web.url("/files/data.bin?ranged")
    config = {"URL": url, "Concurrent": {"Enabled": True, "Num": 4}}
    out = await run_one(client, "get", config)
    check_file(out, settings, fixtures.files["data.bin"])
    assert out["RawData"]["Parts"] == 4
    ranges = sorted(h["Range"] for _, _, h in web.seen("/files/data.bin?ranged") if "Range" in h)
    assert len(ranges) == 4, ranges
    assert all(r.startswith("bytes=") for r in ranges)


async def test_concurrent_falls_back_without_ranges(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    out = await run_one(
        client, "get", {"URL": web.url("/plain/data.bin"), "Concurrent": {"Enabled": True}}
    )
    check_file(out, settings, fixtures.files["data.bin"])
    assert out["RawData"]["Parts"] == 1
    assert out["RawData"]["ETag"] is None


async def test_concurrent_falls_back_when_ranges_are_ignored(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    # The server says Accept-Ranges but sends the whole body to each part: get notices
    # (a 200, not a 206) and downloads it once, whole.
    out = await run_one(
        client, "get", {"URL": web.url("/liar/data.bin"), "Concurrent": {"Enabled": True}}
    )
    check_file(out, settings, fixtures.files["data.bin"])
    assert out["RawData"]["Parts"] == 1


async def test_deleting_the_run_removes_the_partial_file(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    resp = await client.post(
        "/processors/get/runs/r/config", json={"Processor": {"URL": web.url("/slow")}}
    )
    assert resp.status_code == 200
    assert (
        await client.post("/processors/get/runs/r/data", json={"ChunkID": "c"})
    ).status_code == 200
    await wait_for(
        lambda: files_in(settings.data_dir) == ["get/r/c/slow.part"], what="a .part file"
    )
    assert (await client.delete("/processors/get/runs/r")).status_code == 200
    await wait_for(lambda: files_in(settings.data_dir) == [], what="the partial file to go")


async def test_broken_download_resumes_with_a_range(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    out = await run_one(client, "get", fast(URL=web.url("/truncate-once/data.bin")))
    check_file(out, settings, fixtures.files["data.bin"])
    requests = web.seen("/truncate-once/data.bin")
    assert len(requests) == 2
    half = len(fixtures.files["data.bin"]) // 2
    assert requests[1][2].get("Range") == f"bytes={half}-"


async def test_transient_errors_are_retried(
    client: httpx.AsyncClient, web: FixtureHTTP, fixtures: Fixtures, settings: Settings
) -> None:
    out = await run_one(client, "get", fast(URL=web.url("/flaky/retry-test/2"), Retries=3))
    check_file(out, settings, fixtures.files["page.html"])
    assert len(web.seen("/flaky/retry-test/")) == 3


async def test_persistent_5xx_gives_up_with_a_clear_message(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    out = await run_one(client, "get", fast(URL=web.url("/status/503"), Retries=2))
    failed_with(out, "HTTP 503", "fixture answers 503", "gave up after 3 attempts")
    assert files_in(settings.data_dir) == []


async def test_4xx_fails_at_once_and_leaves_nothing(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    out = await run_one(client, "get", fast(URL=web.url("/status/404?once")))
    failed_with(out, "HTTP 404")
    assert "attempts" not in out["Error"]
    assert len(web.seen("/status/404?once")) == 1
    assert files_in(settings.data_dir) == []


async def test_unreachable_host(client: httpx.AsyncClient, settings: Settings) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = await run_one(client, "get", fast(URL=f"http://127.0.0.1:{port}/x", Retries=1))
    failed_with(out, f"could not connect to 127.0.0.1:{port}", "refused", "2 attempts")
    assert files_in(settings.data_dir) == []


async def test_total_timeout_removes_the_partial_file(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    out = await run_one(client, "get", {"URL": web.url("/slow"), "Timeout": 0.5})
    failed_with(out, "did not finish within Timeout=0.5 s")
    assert files_in(settings.data_dir) == []


async def test_idle_timeout(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    out = await run_one(client, "get", fast(URL=web.url("/slow"), IdleTimeout=0.3, Retries=0))
    failed_with(out, "stopped sending data")
    assert files_in(settings.data_dir) == []


async def test_oversize_download_known_in_advance(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    out = await run_one(client, "get", {"URL": web.url("/files/data.bin"), "MaxBytes": 1000})
    failed_with(out, "2097152 bytes", "more than MaxBytes=1000")
    assert files_in(settings.data_dir) == []


async def test_oversize_download_found_while_streaming(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    out = await run_one(client, "get", {"URL": web.url("/stream/5000000"), "MaxBytes": 1_000_000})
    failed_with(out, "passed MaxBytes=1000000")
    assert tree(settings.data_dir) == ["get", "get/r"]  # the chunk's folder is gone too


async def test_file_url_inside_an_allowed_root(
    client: httpx.AsyncClient, fixtures: Fixtures, settings: Settings
) -> None:
    url = (fixtures.files_root / "small.txt").as_uri()
    out = await run_one(client, "get", {"URL": url})
    check_file(out, settings, fixtures.files["small.txt"])
    assert out["RawData"]["LastModified"].endswith("GMT")


async def test_path_escapes_fail_and_write_nothing(
    client: httpx.AsyncClient, outside: Path, settings: Settings
) -> None:
    before = tree(outside)
    out = await run_one(client, "get", {"URL": (outside / "secret.txt").as_uri()})
    failed_with(out, "outside the data directory")
    out = await run_one(client, "get", {"URL": "file:///etc/hostname"}, run="r2")
    failed_with(out, "outside")
    assert tree(outside) == before
    assert files_in(settings.data_dir) == []


async def test_file_name_escape_is_refused(client: httpx.AsyncClient, web: FixtureHTTP) -> None:
    # In the run's configuration it is a 400 at Configure ...
    resp = await client.post(
        "/processors/get/runs/bad/config",
        json={"Processor": {"URL": web.url("/files/small.txt"), "FileName": "../../evil"}},
    )
    assert resp.status_code == 400
    assert "plain file name" in resp.json()["value"]
    # ... and in a chunk's override it fails that chunk.
    out = await run_one(
        client,
        "get",
        {"URL": web.url("/files/small.txt")},
        {"RawData": {"FileName": "../evil"}},
    )
    failed_with(out, "FileName", "plain file name")


def test_name_from_url_is_one_plain_name() -> None:
    assert name_from_url("http://h/dir/report.csv?x=1") == "report.csv"
    assert name_from_url("http://h/..%2F..%2F..%2Fevil") == ".._.._.._evil"
    assert name_from_url("http://h/a%2Fb%5Cc") == "a_b_c"
    for url in ("http://h/", "http://h/%2E%2E", "http://h/x/..", "http://h/%2e%2e%2f"):
        name = name_from_url(url)
        assert "/" not in name
        assert name not in ("", ".", "..")


async def test_encoded_slashes_in_the_url_stay_in_the_chunks_folder(
    client: httpx.AsyncClient, fixtures: Fixtures, settings: Settings
) -> None:
    # The URL's last segment, decoded, is "../../../pwned.txt": taken as a path it
    # would put the file in the data directory's top level, next to other runs' files.
    source = settings.data_dir / "x1" / "pwned.txt"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"moved\n")
    url = (settings.data_dir / "x1").as_uri() + "/x2/x3/x4/..%2F..%2F..%2Fpwned.txt"
    out = await run_one(client, "get", {"URL": url})
    path = check_file(out, settings, b"moved\n")
    assert path.parent == (settings.data_dir / "get" / "r" / "c0").resolve()
    assert files_in(settings.data_dir) == ["get/r/c0/.._.._.._pwned.txt", "x1/pwned.txt"]


async def test_unsupported_scheme_and_missing_url(client: httpx.AsyncClient) -> None:
    failed_with(await run_one(client, "get", {"URL": "ftp://example.org/x"}), "ftp://", "supports")
    failed_with(await run_one(client, "get", {}, run="r2"), "get needs a URL")


async def test_bad_configuration_is_a_400(client: httpx.AsyncClient) -> None:
    for bad in ({"Retries": -1}, {"Retries": "3"}, {"Method": "TRACE"}, {"Concurrent": {"Num": 0}}):
        resp = await client.post("/processors/get/runs/bad/config", json={"Processor": bad})
        assert resp.status_code == 400, (bad, resp.text)
    # An unknown field is ignored and reported (a 400 only under --strict-config).
    resp = await client.post("/processors/get/runs/odd/config", json={"Processor": {"Nope": 1}})
    assert resp.json()["Warnings"] == ["unknown field Processor.Nope ignored"]
