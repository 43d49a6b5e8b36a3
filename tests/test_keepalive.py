"""Idle keep-alive connections: kept open longer than clients keep theirs.

A pooled client reuses an idle connection; if the server closes it just then, the
request fails (the original Go manager does not retry a POST AddData that failed so).
uvicorn closes idle connections after 5 s; the executor keeps them
`--keep-alive-timeout` seconds (620 by default), except while crowded. The servers here
are real (uvicorn on 127.0.0.1, ephemeral ports, in threads); the tests wait for a
server to close a connection by reading from it until it does, never by sleeping.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from wiz_executor import Settings
from wiz_executor.cli import _serve, app
from wiz_executor.pipelines import EmbeddedExecutor
from wiz_executor.server import _keepalive, create_app
from wiz_executor.server._keepalive import KeepAliveProtocol
from wiz_executor.server._serving import connection_options

GO_IDLE_CONN_TIMEOUT = 90
"""Go's http.DefaultTransport keeps an idle connection this long (IdleConnTimeout)."""
UVICORN_DEFAULT = 5
"""uvicorn's own keep-alive timeout, which the executor had before the option."""


def _executor(tmp_path: Path, name: str, **settings: Any) -> EmbeddedExecutor:
    return EmbeddedExecutor(Settings(data_dir=tmp_path / name, ephemeral=True, **settings))


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _get_healthz(sock: socket.socket) -> bytes:
    """One keep-alive GET /healthz on `sock`; its whole answer (b"" if the server had
    closed the connection)."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        part = sock.recv(65536)
        if not part:
            return answer
        answer += part
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body


def _wait_closed_by_server(sock: socket.socket) -> None:
    """Block until the server closes `sock` (recv answers b""); fail after 30 s."""
    try:
        data = sock.recv(1)
    except TimeoutError:
        pytest.fail("the server did not close the idle connection within 30 s")
    assert data == b"", data


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_the_default_outlasts_go_and_reaches_uvicorn() -> None:
    assert Settings().keep_alive_timeout > GO_IDLE_CONN_TIMEOUT
    config = uvicorn.Config(create_app(Settings()), **connection_options(Settings()))
    assert config.timeout_keep_alive == Settings().keep_alive_timeout
    assert config.http is KeepAliveProtocol


@pytest.mark.parametrize(("args", "expected"), [([], 620), (["--keep-alive-timeout", "30"], 30)])
def test_the_option_reaches_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], expected: int
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(_serve, "create_app", lambda s: seen.setdefault("settings", s))
    monkeypatch.setattr(_serve, "run_server", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(_serve, "configure_logging", lambda *a, **kw: None)
    result = CliRunner().invoke(app, ["executor", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert seen["settings"].keep_alive_timeout == expected
    assert seen["timeout_keep_alive"] == expected
    assert seen["http"] is KeepAliveProtocol
    assert seen["server_header"] is False


def test_answers_do_not_name_the_server(tmp_path: Path, sockets: list[socket.socket]) -> None:
    """No `Server: uvicorn` (the Go original sends no Server header either)."""
    with _executor(tmp_path, "plain") as served:
        sock = _connect(served.url)
        sockets.append(sock)
        head = _get_healthz(sock).partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"\r\ndate: " in head
    assert b"\r\nserver:" not in head


def test_a_bad_timeout_is_refused() -> None:
    result = CliRunner().invoke(app, ["executor", "--keep-alive-timeout", "0"])
    assert result.exit_code == 2
    assert "keep-alive-timeout" in result.output
    with pytest.raises(ValueError, match="keep_alive_timeout"):
        Settings(keep_alive_timeout=0)


def test_an_idle_connection_outlives_uvicorns_default(
    tmp_path: Path, sockets: list[socket.socket]
) -> None:
    """A connection idle for longer than uvicorn's 5 s still takes a request.

    The clock is a second executor with uvicorn's 5 s: its connection, last used after
    the executor's own, is closed first; the executor's, idle longer, still answers."""
    with (
        _executor(tmp_path, "kept") as kept,
        _executor(tmp_path, "short", keep_alive_timeout=UVICORN_DEFAULT) as short,
    ):
        idle = _connect(kept.url)
        clock = _connect(short.url)
        sockets += [idle, clock]
        assert _get_healthz(idle).startswith(b"HTTP/1.1 200")
        for _ in range(10):  # last used after `idle`: its 5 s end later
            assert _get_healthz(clock).startswith(b"HTTP/1.1 200")
        _wait_closed_by_server(clock)
        assert _get_healthz(idle).startswith(b"HTTP/1.1 200"), "closed while idle"


def test_a_crowded_server_closes_idle_connections_sooner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sockets: list[socket.socket]
) -> None:
    """Past `crowd` open connections, a connection going idle gets the short timeout,
    so that connections a client leaves behind do not hold descriptors for minutes."""
    monkeypatch.setattr(KeepAliveProtocol, "crowd", 1)
    monkeypatch.setattr(_keepalive, "CROWDED_TIMEOUT", 1)
    with _executor(tmp_path, "crowded") as crowded:
        first, second = _connect(crowded.url), _connect(crowded.url)
        sockets += [first, second]
        # Each answered once both are surely accepted (the second's answer proves it),
        # so each goes idle while two connections are open.
        for sock in (first, second, first):
            assert _get_healthz(sock).startswith(b"HTTP/1.1 200")
        _wait_closed_by_server(first)
        _wait_closed_by_server(second)


def test_the_crowd_is_a_share_of_the_descriptor_limit() -> None:
    assert _keepalive.crowded_above() >= 256
    assert KeepAliveProtocol.crowd == _keepalive.crowded_above()
