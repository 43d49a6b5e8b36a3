"""TLS end to end, with certificates the tests make (trustme): an executor served over
https on 127.0.0.1, and every client of it (the Python client, the CLI, pipelines, a
downstream delivery from another executor) verifying its certificate against the CA
they are given, and refusing it, clearly, without."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _certs import Certs, make_certs
from conftest import wait_run_done
from wiz_executor import Executor, Settings, create_app
from wiz_executor.pipelines import EmbeddedExecutor


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_settings(certs: Certs, data_dir: Path, **more: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        ssl_certfile=certs.cert,
        ssl_keyfile=certs.key,
        shutdown_grace=2,
        downstream_backoff=0.01,
        **more,  # type: ignore[arg-type]
    )


@pytest.fixture
def https_executor(certs: Certs, tmp_path: Path) -> Iterator[EmbeddedExecutor]:
    """An executor serving https on 127.0.0.1 and an ephemeral port (in a thread)."""
    with EmbeddedExecutor(tls_settings(certs, tmp_path / "b")) as executor:
        yield executor


async def _deliver(settings: Settings, target: EmbeddedExecutor) -> dict[str, object]:
    """Run one chunk on executor A (started with `settings`) sending downstream to
    `target`; A's output chunk once the run ended."""
    async with Executor(settings) as executor:
        transport = httpx.ASGITransport(app=create_app(executor=executor))
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as a:
            location = {"Hostname": target.url, "ProcID": "noop", "RunID": "there"}
            config = {
                "ExpectedData": {"NumChunks": 1},
                "ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": [location]},
            }
            assert (await a.post("/processors/noop/runs/here/config", json=config)).is_success
            resp = await a.post("/processors/noop/runs/here/data", json={"ChunkID": "c"})
            assert resp.is_success, resp.text
            await wait_run_done(a, "noop", "here")
            out: dict[str, object] = (await a.get("/processors/noop/runs/here/data")).json()["Out"][
                0
            ]
            return out


async def test_a_downstream_delivery_to_an_https_executor_trusts_ssl_ca_certs(
    certs: Certs, https_executor: EmbeddedExecutor, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=https_executor.url, verify=certs.client_context()) as b:
        config = {"ExpectedData": {"NumChunks": 1}}
        assert (await b.post("/processors/noop/runs/there/config", json=config)).is_success
        settings = Settings(data_dir=tmp_path / "a", ssl_ca_certs=certs.ca, downstream_backoff=0.01)
        out = await _deliver(settings, https_executor)
        assert out["State"] == "SUCCEEDED"
        assert "DeliveryError" not in out
        run = await wait_run_done(b, "noop", "there")
        assert run["CurrentState"] == "SUCCEEDED"
        chunk = (await b.get("/processors/noop/runs/there/data/input/c-out")).json()
        assert chunk["AssociatedChunkID"] == "c-out-there"


async def test_a_downstream_delivery_without_the_ca_fails_naming_the_certificate(
    certs: Certs, https_executor: EmbeddedExecutor, tmp_path: Path
) -> None:
    """At once (an untrusted certificate stays untrusted), and saying what to do."""
    settings = Settings(data_dir=tmp_path / "a", downstream_attempts=5, downstream_backoff=0.01)
    out = await _deliver(settings, https_executor)
    error = str(out.get("DeliveryError"))
    assert "certificate" in error, error
    assert "--ssl-ca-certs" in error, error
    assert "gave up after" not in error, error
