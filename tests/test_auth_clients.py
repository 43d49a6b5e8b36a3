"""Everything that talks to an executor with a token sends it: the Python clients (the
`token=` argument, else WIZ_TOKEN), the CLI verbs (`--token`, WIZ_TOKEN), `wiz pipeline
run --url`, and downstream deliveries (the target's own token, else the executor's)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from _stub_server import serve_asgi
from conftest import live_server, wait_run_done
from wiz_executor import AsyncClient, Client, Settings, State, Unauthorized
from wiz_executor.cli import app
from wiz_executor.pipelines import EmbeddedExecutor

TOKEN = "client-token-1"
EXAMPLE = Path(__file__).parent.parent / "examples" / "hello-pipeline.yaml"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIZ_TOKEN", raising=False)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    """The URL of an executor (in a thread) that requires TOKEN."""
    settings = Settings(data_dir=tmp_path / "wiz-data", shutdown_grace=2, token=TOKEN)
    with EmbeddedExecutor(settings) as executor:
        yield executor.url


# -- the Python clients ----------------------------------------------------------------


def test_client_sends_its_token(guarded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(guarded) as wiz, pytest.raises(Unauthorized, match="requires a token"):
        wiz.processors()
    with Client(guarded, token="wrong") as wiz, pytest.raises(Unauthorized, match="not the one"):
        wiz.processors()
    with Client(guarded, token=TOKEN) as wiz:
        wiz.configure("noop", "r", {"ExpectedData": {"NumChunks": 1}})
        wiz.add_data("noop", "r", {"ChunkID": "c"})
        # wait follows the run's event stream, which needs the token too
        assert wiz.wait("noop", "r", timeout=30).CurrentState is State.SUCCEEDED
    monkeypatch.setenv("WIZ_TOKEN", TOKEN)
    with Client(guarded) as wiz:
        assert "noop" in {p.ProcID for p in wiz.processors()}
    # an explicit empty token sends none, whatever the environment says
    with Client(guarded, token="") as wiz, pytest.raises(Unauthorized):
        wiz.processors()


async def test_async_client_sends_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "d", shutdown_grace=2, token=TOKEN)
    async with live_server(settings) as (url, _):
        async with AsyncClient(url) as wiz:
            with pytest.raises(Unauthorized):
                await wiz.processors()
        async with AsyncClient(url, token=TOKEN) as wiz:
            await wiz.configure("noop", "r", {"ExpectedData": {"NumChunks": 1}})
            await wiz.add_data("noop", "r", {"ChunkID": "c"})
            assert (await wiz.wait("noop", "r", timeout=30)).CurrentState is State.SUCCEEDED
        monkeypatch.setenv("WIZ_TOKEN", TOKEN)
        async with AsyncClient(url) as wiz:
            assert len(await wiz.runs("noop")) == 1


def test_an_authorization_header_given_is_kept(guarded: str) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with Client(guarded, token="other", headers=headers) as wiz:
        assert wiz.processors()


# -- the CLI ---------------------------------------------------------------------------


def test_every_verb_takes_token_and_wiz_token() -> None:
    verbs = ["processors", "runs", "run", "configure", "send", "end", "watch", "data", "delete"]
    for verb in [*verbs, "pipeline run"]:
        result = runner.invoke(app, [*verb.split(), "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "--token" in result.output, verb
        assert "WIZ_TOKEN" in result.output, verb


def test_cli_verbs_send_the_token(guarded: str, tmp_path: Path) -> None:
    url = ["--url", guarded]
    result = runner.invoke(app, ["processors", *url])
    assert result.exit_code == 1
    assert "requires a token" in result.output
    result = runner.invoke(app, ["processors", *url, "--token", TOKEN, "--json"])
    assert result.exit_code == 0, result.output
    env = {"WIZ_TOKEN": TOKEN}
    result = runner.invoke(app, ["configure", "noop", "r", "--num-chunks", "2", *url], env=env)
    assert result.exit_code == 0, result.output
    chunks = tmp_path / "chunks.ndjson"
    chunks.write_text('{"a": 1}\n{"a": 2}\n')
    result = runner.invoke(app, ["send", "noop", "r", str(chunks), *url], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["watch", "noop", "r", "--timeout", "30", "--json", *url], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["CurrentState"] == "SUCCEEDED"
    result = runner.invoke(app, ["data", "noop", "r", "--json", *url], env=env)
    assert len(json.loads(result.stdout)["Out"]) == 2
    result = runner.invoke(app, ["delete", "noop", "r", *url], env=env)
    assert result.exit_code == 0, result.output


def test_pipeline_run_on_an_executor_with_a_token(guarded: str) -> None:
    """The runner's requests carry the token; the executor's deliveries between the
    pipeline's runs (to itself) carry its own."""
    args = ["pipeline", "run", str(EXAMPLE), "--url", guarded, "--json"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert "requires a token" in refused.output
    result = runner.invoke(app, [*args, "--token", TOKEN])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["State"] == "SUCCEEDED"
    assert all(len(out["Chunks"]) == 3 for out in report["Outputs"])


def test_pipeline_run_embedded_needs_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIZ_TOKEN", TOKEN)  # set for other executors: harmless here
    result = runner.invoke(app, ["pipeline", "run", str(EXAMPLE), "--json"], env={"WIZ_URL": None})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["State"] == "SUCCEEDED"


# -- downstream deliveries -------------------------------------------------------------


class Recorder:
    """A downstream stand-in that accepts every chunk and records its Authorization."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        self.seen.append(auth.decode() if auth is not None else None)
        body = b'{"Accepted":1,"Duplicates":0}'
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def deliver_to(settings: Settings, targets: list[str]) -> None:
    """Run one chunk on an executor with `settings`, delivered to every target."""
    locations = [{"Hostname": t, "ProcID": "noop", "RunID": "next"} for t in targets]
    config = {
        "ExpectedData": {"NumChunks": 1},
        "ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": locations},
    }
    auth = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    async with (
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url, headers=auth) as http,
    ):
        assert (await http.post("/processors/noop/runs/r/config", json=config)).is_success
        assert (await http.post("/processors/noop/runs/r/data", json={"ChunkID": "c"})).is_success
        run = await wait_run_done(http, "noop", "r")
        assert run["CurrentState"] == "SUCCEEDED", run


async def test_downstream_sends_each_target_its_token(settings: Settings) -> None:
    b, c = Recorder(), Recorder()
    async with serve_asgi(b) as host_b, serve_asgi(c) as host_c:
        own = replace(settings, token=TOKEN, downstream_tokens={f"http://{host_b}/": "tok-b"})
        await deliver_to(own, [host_b, host_c])
    assert b.seen == ["Bearer tok-b"]  # its own, given by host:port (a URL here)
    assert c.seen == [f"Bearer {TOKEN}"]  # none given: the executor's own


async def test_downstream_without_tokens_sends_no_authorization(settings: Settings) -> None:
    b, c = Recorder(), Recorder()
    settings = replace(settings, ephemeral=True)  # two executors in turn, one folder
    async with serve_asgi(b) as host_b, serve_asgi(c) as host_c:
        await deliver_to(settings, [host_b])
        # a token for one target only: the others still get none
        await deliver_to(replace(settings, downstream_tokens={host_b: "tok-b"}), [host_c])
    assert b.seen == [None]
    assert c.seen == [None]


async def test_delivery_between_two_executors_with_different_tokens(tmp_path: Path) -> None:
    target = Settings(data_dir=tmp_path / "b", token="token-of-b", shutdown_grace=2)
    async with (
        live_server(target) as (url_b, _),
        httpx.AsyncClient(base_url=url_b, headers={"Authorization": "Bearer token-of-b"}) as b,
    ):
        config = {"ExpectedData": {"NumChunks": 1}}
        assert (await b.post("/processors/noop/runs/next/config", json=config)).is_success
        host_b = url_b.removeprefix("http://")
        sender = Settings(
            data_dir=tmp_path / "a",
            token="token-of-a",
            downstream_tokens={host_b: "token-of-b"},
            downstream_backoff=0.01,
            shutdown_grace=2,
        )
        await deliver_to(sender, [host_b])
        run = await wait_run_done(b, "noop", "next")
        assert run["ChunkCounts"]["SUCCEEDED"] == 1
