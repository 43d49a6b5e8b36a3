"""TLS end to end, with certificates the tests make (trustme): an executor served over
https on 127.0.0.1, and every client of it (the Python client, the CLI, pipelines, a
downstream delivery from another executor) verifying its certificate against the CA
they are given, and refusing it, clearly, without."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from _certs import Certs, make_certs
from conftest import wait_run_done
from wiz_executor import AsyncClient, Client, Executor, Settings, State, TLSError, create_app
from wiz_executor._tls import ca_bundle_pem, client_context, pem_context, verification_failure
from wiz_executor.cli import app
from wiz_executor.client import ChunkEvent, DoneEvent
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


# -- what clients trust ---------------------------------------------------------------


def test_an_extra_ca_bundle_is_trusted_besides_the_default_trust(certs: Certs) -> None:
    """`--ssl-ca-certs` adds to the system's CAs and certifi's; it does not replace them
    (an executor delivering to a private-CA executor still fetches public sites)."""
    default = {c["serialNumber"] for c in client_context().get_ca_certs()}
    extra = {c["serialNumber"] for c in client_context(certs.ca).get_ca_certs()}
    ours = {c["serialNumber"] for c in certs.client_context().get_ca_certs()}
    assert len(ours) == 1
    assert default, "no default CAs: the test says nothing"
    assert extra == default | ours
    assert client_context(certs.ca).verify_mode is ssl.CERT_REQUIRED
    assert client_context(certs.ca).check_hostname


# -- the Python client ----------------------------------------------------------------


def test_the_client_verifies_with_the_ca_it_is_given(
    certs: Certs, https_executor: EmbeddedExecutor
) -> None:
    assert https_executor.url.startswith("https://127.0.0.1:")
    with Client(https_executor.url, verify=certs.ca) as wiz:
        assert "noop" in [p.ProcID for p in wiz.processors()]
    with Client(https_executor.url, verify=str(certs.ca)) as wiz:
        assert wiz.processor("noop").ProcID == "noop"
    with Client(https_executor.url, verify=certs.client_context()) as wiz:
        assert wiz.runs("noop") == []


def test_the_client_refuses_an_unknown_ca_by_default(https_executor: EmbeddedExecutor) -> None:
    with Client(https_executor.url) as wiz, pytest.raises(httpx.ConnectError) as caught:
        wiz.processors()
    assert verification_failure(caught.value) is not None
    assert "certificate verify failed" in str(caught.value)


def test_the_client_will_not_switch_verification_off(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="verify=False is not supported"):
        Client("https://127.0.0.1:1", verify=False)  # type: ignore[arg-type]
    with pytest.raises(TLSError, match=r"missing\.pem"):
        AsyncClient("https://127.0.0.1:1", verify=tmp_path / "missing.pem")


async def test_the_async_client_streams_events_over_https(
    certs: Certs, https_executor: EmbeddedExecutor
) -> None:
    """The SSE stream (what `wait` and `follow` read) works over TLS, to its `done`."""
    async with AsyncClient(https_executor.url, verify=certs.ca) as wiz:
        await wiz.configure("noop", "sse", {"ExpectedData": {"NumChunks": 2}})
        seen: list[object] = []
        async with aclosing(wiz.events("noop", "sse")) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 1:  # the stream is open: now make it move
                    await wiz.add_data(
                        "noop", "sse", [{"ChunkID": "a"}, {"ChunkID": "b", "RawData": 2}]
                    )
        assert isinstance(seen[-1], DoneEvent)
        assert seen[-1].CurrentState is State.SUCCEEDED
        assert {e.ChunkID for e in seen if isinstance(e, ChunkEvent)} == {"a", "b"}
        run = await wiz.wait("noop", "sse", timeout=30)
        assert run.CurrentState is State.SUCCEEDED


# -- the CLI --------------------------------------------------------------------------


def wiz_cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"WIZ_CA_CERTS": None, **(env or {})})


def test_cli_verbs_take_ssl_ca_certs_or_wiz_ca_certs(
    certs: Certs, https_executor: EmbeddedExecutor, tmp_path: Path
) -> None:
    url = https_executor.url
    result = wiz_cli("processors", "--url", url, "--ssl-ca-certs", str(certs.ca))
    assert result.exit_code == 0, result.output
    assert "noop" in result.stdout
    result = wiz_cli("configure", "noop", "cli", "--url", url, env={"WIZ_CA_CERTS": str(certs.ca)})
    assert result.exit_code == 0, result.output
    chunks = tmp_path / "chunks.json"
    chunks.write_text('[{"a": 1}, {"a": 2}]')
    trusted = {"WIZ_CA_CERTS": str(certs.ca)}
    result = wiz_cli(
        "send", "noop", "cli", str(chunks), "--end-of-input", "--url", url, env=trusted
    )
    assert result.exit_code == 0, result.output
    # watch follows the run's event stream over https to its end
    result = wiz_cli("watch", "noop", "cli", "--json", "--timeout", "30", "--url", url, env=trusted)
    assert result.exit_code == 0, result.output
    assert '"SUCCEEDED"' in result.stdout.splitlines()[-1]


def test_cli_without_the_ca_is_one_clear_line(https_executor: EmbeddedExecutor) -> None:
    result = wiz_cli("processors", "--url", https_executor.url)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach the executor at {https_executor.url}")
    assert "certificate could not be verified" in lines[0]
    assert "--ssl-ca-certs" in lines[0]
    assert "WIZ_CA_CERTS" in lines[0]


def test_cli_with_an_unusable_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    result = wiz_cli("processors", "--url", "https://127.0.0.1:1", "--ssl-ca-certs", str(missing))
    assert result.exit_code == 2, result.output
    assert "nowhere.pem" in result.stderr
    assert "Traceback" not in result.output


def test_pipeline_run_on_a_remote_https_executor(certs: Certs, tmp_path: Path) -> None:
    """The CLI verifies the executor with --ssl-ca-certs; the executor delivers each
    node's outputs to itself at its https URL, so it trusts the same CA."""
    settings = tls_settings(certs, tmp_path / "data", ssl_ca_certs=certs.ca)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: tls\ndata: [1, 2]\nspec:\n  sequential:\n"
        "    - {name: first, processor: {id: noop}}\n"
        "    - {name: second, processor: {id: noop}}\n"
    )
    with EmbeddedExecutor(settings) as executor:
        args = ["pipeline", "run", str(pipeline), "--url", executor.url, "--json"]
        result = wiz_cli(*args, "--ssl-ca-certs", str(certs.ca))
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["State"] == "SUCCEEDED"
        outputs = {o["Node"]: o for o in report["Outputs"]}
        assert [c["RawData"] for c in outputs["second"]["Chunks"]] == [1, 2]
        refused = wiz_cli(*args)
        assert refused.exit_code == 1
        assert "certificate could not be verified" in refused.stderr


def test_a_ca_bundle_travels_as_pem_text(tmp_path: Path) -> None:
    """What a Ray actor gets for --ssl-ca-certs: the bundle's certificates as text, from
    a file or from a folder, trusted on top of the default. Of a folder only the files
    OpenSSL's lookup reads (named by subject hash) go, as only they are trusted by the
    executor: its server certificate and key beside them do not."""
    certs = make_certs(tmp_path / "certs")
    ca = ssl.PEM_cert_to_DER_cert(certs.ca.read_text())
    hashed = tmp_path / "hashed"
    hashed.mkdir()
    (hashed / "0a1b2c3d.0").write_bytes(certs.ca.read_bytes())
    for name in ("server.pem", "server.key"):
        (hashed / name).write_bytes((certs.ca.parent / name).read_bytes())
    leaf = ssl.PEM_cert_to_DER_cert(certs.cert.read_text())
    for bundle in (certs.ca, hashed):
        pem = ca_bundle_pem(bundle)
        assert "PRIVATE KEY" not in pem
        trusted = pem_context(pem).get_ca_certs(binary_form=True)
        assert ca in trusted
        assert leaf not in trusted
        assert len(trusted) > 1  # the default trust too
    assert ca_bundle_pem(certs.ca.parent) == ""  # no file named by hash: nothing


def test_a_ca_bundle_with_utf8_comments_travels(tmp_path: Path) -> None:
    """System bundles (certifi's, RHEL's) have UTF-8 in their comment lines, which
    OpenSSL skips and `cadata` refuses: only the certificate blocks travel."""
    certs = make_certs(tmp_path / "certs")
    bundle = tmp_path / "bundle.pem"
    comment = "# Issuer: CN=Főtanúsítvány O=Példa\n".encode()
    bundle.write_bytes(comment + certs.ca.read_bytes() + comment)
    client_context(bundle)  # the executor takes it
    trusted = pem_context(ca_bundle_pem(bundle)).get_ca_certs(binary_form=True)
    assert ssl.PEM_cert_to_DER_cert(certs.ca.read_text()) in trusted
