"""`wiz executor --ssl-certfile --ssl-keyfile`: serving HTTPS, and refusing to start,
in one clear line naming the file, when the files cannot be used."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner, Result

from _certs import Certs, make_certs
from wiz_executor import Settings
from wiz_executor.cli import _serve, app
from wiz_executor.pipelines import EmbeddedExecutor


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def serve(
    *args: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None] | None = None
) -> tuple[Result, dict[str, Any]]:
    """`wiz executor ARGS` without serving: what it would pass to the server."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        _serve, "create_app", lambda settings: seen.setdefault("settings", settings)
    )
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: seen.update(options=kw))
    monkeypatch.setattr(_serve, "configure_logging", lambda level, fmt="text": None)
    env = {"WIZ_CA_CERTS": None, "WIZ_SSL_KEYFILE_PASSWORD": None, **(env or {})}
    return CliRunner().invoke(app, ["executor", *args], env=env), seen


def refused(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = result.stderr.strip()
    assert line.startswith("error: "), result.stderr
    assert "\n" not in line, result.stderr
    for word in words:
        assert word in line, (word, line)


def test_tls_options_become_settings_and_server_options(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.key)]
    result, seen = serve(*args, "--ssl-ca-certs", str(certs.ca), monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    settings: Settings = seen["settings"]
    assert (settings.ssl_certfile, settings.ssl_keyfile) == (certs.cert, certs.key)
    assert settings.ssl_ca_certs == certs.ca
    assert seen["options"]["ssl_certfile"] == str(certs.cert)
    assert seen["options"]["ssl_keyfile"] == str(certs.key)
    result, seen = serve(monkeypatch=monkeypatch, env={"WIZ_CA_CERTS": str(certs.ca)})
    assert result.exit_code == 0, result.output
    assert seen["settings"].ssl_ca_certs == certs.ca


def test_tls_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    result, seen = serve(monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert seen["settings"].ssl_certfile is None
    assert not any(key.startswith("ssl") for key in seen["options"])


@pytest.mark.parametrize("given", ["--ssl-certfile", "--ssl-keyfile"])
def test_certfile_and_keyfile_go_together(
    given: str, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, seen = serve(given, str(certs.cert), monkeypatch=monkeypatch)
    other = "--ssl-keyfile" if given == "--ssl-certfile" else "--ssl-certfile"
    refused(result, f"{given} needs {other}")
    assert "settings" not in seen
    with pytest.raises(ValueError, match="both or neither"):
        Settings(ssl_certfile=certs.cert)


def test_a_missing_certificate_file_is_named(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone.pem"
    result, seen = serve(
        "--ssl-certfile", str(missing), "--ssl-keyfile", str(certs.key), monkeypatch=monkeypatch
    )
    refused(result, "--ssl-certfile", str(missing), "No such file")
    assert "options" not in seen


def test_a_file_that_is_no_certificate_is_named(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    args = ["--ssl-certfile", str(junk), "--ssl-keyfile", str(certs.key)]
    refused(serve(*args, monkeypatch=monkeypatch)[0], str(junk), "no PEM certificate")
    args = ["--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(junk)]
    refused(serve(*args, monkeypatch=monkeypatch)[0], str(junk), "private key")


def test_a_key_of_another_certificate_is_named(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_certs(tmp_path / "other")
    args = ["--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(other.key)]
    result, _ = serve(*args, monkeypatch=monkeypatch)
    refused(result, str(other.key), str(certs.cert), "does not belong")


def test_an_encrypted_key_needs_its_password_and_is_never_prompted_for(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    args = ["--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(locked)]
    # CliRunner's stdin is empty: a prompt would read nothing and fail differently.
    refused(serve(*args, monkeypatch=monkeypatch)[0], str(locked), "--ssl-keyfile-password")
    wrong = serve(*args, "--ssl-keyfile-password", "nope", monkeypatch=monkeypatch)[0]
    refused(wrong, str(locked), "does not decrypt")
    result, seen = serve(*args, "--ssl-keyfile-password", "s3cret", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert seen["options"]["ssl_keyfile_password"] == "s3cret"
    assert "s3cret" not in repr(seen["settings"])
    result, seen = serve(*args, monkeypatch=monkeypatch, env={"WIZ_SSL_KEYFILE_PASSWORD": "s3cret"})
    assert result.exit_code == 0, result.output
    assert seen["settings"].ssl_keyfile_password == "s3cret"


def test_an_unusable_ca_bundle_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "ca.pem"
    refused(serve("--ssl-ca-certs", str(missing), monkeypatch=monkeypatch)[0], str(missing))


def test_executor_help_lists_the_tls_options() -> None:
    result = CliRunner().invoke(app, ["executor", "--help"], env={"COLUMNS": "200"})
    for option in ("--ssl-certfile", "--ssl-keyfile", "--ssl-keyfile-password", "--ssl-ca-certs"):
        assert option in result.output, option


# -- serving ------------------------------------------------------------------------


def tls_settings(certs: Certs, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir, ssl_certfile=certs.cert, ssl_keyfile=certs.key, shutdown_grace=1
    )


def handshake(url: str, ctx: ssl.SSLContext) -> str:
    """Connect to an https URL's host and port with `ctx`; the cipher agreed on."""
    parts = httpx.URL(url)
    assert parts.port is not None
    with (
        socket.create_connection((parts.host, parts.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=parts.host) as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return cipher[0]


def test_the_server_offers_only_strong_tls(certs: Certs, tmp_path: Path) -> None:
    """TLS 1.3 when the client has it, and on 1.2 only forward-secret AEAD suites:
    Python's default server ciphers (uvicorn's, when it is given none) also agree to CBC
    suites, and older uvicorn releases passed "TLSv1", which adds SHA-1 and NULL ones."""
    with EmbeddedExecutor(tls_settings(certs, tmp_path)) as executor:
        best = handshake(executor.url, certs.client_context())
        assert best.startswith("TLS_"), best  # TLS 1.3
        tls12 = certs.client_context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        agreed = handshake(executor.url, tls12)
        assert "GCM" in agreed or "CHACHA20" in agreed, agreed
        for weak in ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA"):
            ctx = certs.client_context()
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(weak)
            with pytest.raises(ssl.SSLError):
                handshake(executor.url, ctx)


def test_an_idle_tls_connection_does_not_hold_up_shutdown(certs: Certs, tmp_path: Path) -> None:
    """A client's idle keep-alive connection (a pool, the executor's own downstream
    client) never answers the server's TLS close: waiting for it held the server up
    for asyncio's 30 s TLS shutdown timeout (its thread outlived `with` by far)."""
    with (
        EmbeddedExecutor(tls_settings(certs, tmp_path)) as executor,
        httpx.Client(base_url=executor.url, verify=certs.client_context()) as idle,
    ):
        assert idle.get("/healthz").status_code == 200
        executor.__exit__(None, None, None)  # stops with `idle` still open
        thread = executor._thread
        assert thread is not None
        assert not thread.is_alive(), "the server is still waiting for the idle connection"


async def test_wiz_executor_serves_https_and_stops_cleanly(certs: Certs, tmp_path: Path) -> None:
    """The real command: its start-up line names an https URL; the API, the dashboard
    and /docs answer over https (their pages load everything from their own origin);
    SIGINT stops it cleanly even with a keep-alive connection open."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wiz_executor",
        "executor",
        "--port",
        "0",
        "--ssl-certfile",
        str(certs.cert),
        "--ssl-keyfile",
        str(certs.key),
        "--data-dir",
        str(tmp_path / "data"),
        "--shutdown-grace",
        "1",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    logged: list[str] = []
    try:
        async with asyncio.timeout(30):
            while "executor started on" not in (logged[-1] if logged else ""):
                line = (await proc.stderr.readline()).decode()
                assert line, f"wiz executor exited: {''.join(logged)}"
                logged.append(line)
        url = logged[-1].split("executor started on ", 1)[1].split(":", 2)
        assert url[0] == "https", logged[-1]
        base = ":".join(url[:2]) + ":" + url[2].split(":")[0]
        async with httpx.AsyncClient(base_url=base, verify=certs.client_context()) as http:
            assert (await http.get("/healthz")).json()["status"] == "ok"
            page = await http.get("/")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
            assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")
            docs = await http.get("/docs")
            assert docs.status_code == 200
            assert "http://" not in docs.text
            assert (await http.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
            assert (await http.get("/openapi.json")).status_code == 200
            proc.send_signal(signal.SIGINT)  # while this client's connection is open
            async with asyncio.timeout(30):
                rest = (await proc.stderr.read()).decode()
                await proc.wait()
        assert proc.returncode == 0, rest
        assert "timeout graceful shutdown exceeded" not in rest, rest
        assert "executor stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
