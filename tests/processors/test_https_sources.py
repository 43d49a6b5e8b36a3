"""`get` and `scrape` over https: verified against the system's CAs plus the executor's
`--ssl-ca-certs` (`Settings.ssl_ca_certs`), with a fixture server whose certificate
comes from a CA the tests make."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from _certs import Certs, make_certs
from processors._servers import FixtureHTTP
from processors.conftest import Fixtures, Repos, failed_with, run_one
from wiz_executor import Executor, Settings, TLSError, create_app


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_web(certs: Certs, fixtures: Fixtures, repos: Repos) -> Iterator[FixtureHTTP]:
    with FixtureHTTP(fixtures.files, repos.root, tls=certs.server_context()) as server:
        yield server


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with Executor(settings) as executor:
        transport = httpx.ASGITransport(app=create_app(executor=executor))
        async with httpx.AsyncClient(transport=transport, base_url="http://executor") as c:
            yield c


@pytest.fixture
async def trusting(settings: Settings, certs: Certs) -> AsyncIterator[httpx.AsyncClient]:
    """An executor started with --ssl-ca-certs naming the fixture server's CA."""
    async for client in _client(dataclasses.replace(settings, ssl_ca_certs=certs.ca)):
        yield client


@pytest.fixture
async def untrusting(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An executor that trusts only the default CAs."""
    async for client in _client(settings):
        yield client


def _content(location: str) -> bytes:
    return Path(location).read_bytes()


async def test_get_downloads_over_https_with_the_ca(
    trusting: httpx.AsyncClient, tls_web: FixtureHTTP, fixtures: Fixtures
) -> None:
    out = await run_one(trusting, "get", {"URL": tls_web.url("/files/small.txt")})
    assert out["State"] == "SUCCEEDED", out
    body = fixtures.files["small.txt"]
    assert _content(out["FilesystemReference"]["Location"]) == body
    assert out["RawData"]["SHA256"] == hashlib.sha256(body).hexdigest()


async def test_get_without_the_ca_fails_naming_the_certificate_at_once(
    untrusting: httpx.AsyncClient, tls_web: FixtureHTTP
) -> None:
    """An untrusted certificate is final: no retries (they cannot help), and the message
    says it is the certificate, not "Operation not permitted" (the errno of the SSL
    error) as a plain connection failure would."""
    out = await run_one(
        untrusting, "get", {"URL": tls_web.url("/files/small.txt"), "Retries": 3, "Backoff": 0.01}
    )
    failed_with(out, "127.0.0.1", "certificate", "--ssl-ca-certs")
    assert "Operation not permitted" not in out["Error"]
    assert "attempts" not in out["Error"]  # failed on the first one


async def test_scrape_reads_an_https_page_with_the_ca(
    trusting: httpx.AsyncClient, tls_web: FixtureHTTP
) -> None:
    config = {
        "config": {"Sites": [tls_web.url("/files/page.html")]},
        "scraper": {"title": {"selector": "h1.title", "values": {"text": "text"}}},
    }
    out = await run_one(trusting, "scrape", config)
    assert out["State"] == "SUCCEEDED", out
    assert out["RawData"] == {"title": [{"text": "Hello"}]}


async def test_scrape_without_the_ca_fails_naming_the_certificate(
    untrusting: httpx.AsyncClient, tls_web: FixtureHTTP
) -> None:
    config = {
        "config": {"Sites": [tls_web.url("/files/page.html")], "Retries": 2, "Backoff": 0.01},
        "scraper": {"title": {"selector": "h1", "values": {"text": "text"}}},
    }
    out = await run_one(untrusting, "scrape", config)
    failed_with(out, "certificate", "--ssl-ca-certs")
    assert "attempts" not in out["Error"]


async def test_an_unusable_ca_bundle_stops_the_executor_from_starting(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TLSError, match=r"cannot use the CA bundle .*nope\.pem"):
        async with Executor(Settings(data_dir=tmp_path / "d", ssl_ca_certs=missing)):
            pass
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TLSError, match=r"junk\.pem"):
        async with Executor(Settings(data_dir=tmp_path / "d", ssl_ca_certs=junk)):
            pass
