"""Downstream delivery: each finished output goes, as an INPUT chunk named by the output's
ID, to run RunID of processor ProcID at every DownstreamLocations[].Hostname, with
retries; a delivery that finally fails is recorded and makes the run ERRORED."""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, configure, run_path
from _stub_server import FlakyDownstream, closed_port, deliver_one, serve_asgi
from conftest import live_server, wait_for, wait_run_done
from wiz_executor import (
    Configuration,
    DataFormat,
    Executor,
    ProcessorConfig,
    Settings,
    WorkModel,
)
from wiz_executor.downstream import Downstream
from wiz_executor.runs import Chunk, Run, RunMap

pytestmark = pytest.mark.anyio


def settings_for(tmp_path: Path, name: str, attempts: int = 4) -> Settings:
    return Settings(data_dir=tmp_path / name, downstream_attempts=attempts, downstream_backoff=0.01)


def host(url: str) -> str:
    return url.removeprefix("http://")


def location(hostname: str, proc: str, run: str) -> dict[str, str]:
    return {"Hostname": hostname, "ProcID": proc, "RunID": run}


async def configure_sender(
    http: httpx.AsyncClient, run: str, num_chunks: int, locations: list[dict[str, str]]
) -> None:
    await configure(
        http,
        "noop",
        run,
        num_chunks=num_chunks,
        SendDownstream=True,
        DownstreamLocations=locations,
    )


def chunks(n: int) -> list[dict[str, Any]]:
    return [
        {"ChunkID": f"in{i}", "AssociatedChunkID": f"out{i}", "RawData": {"i": i}} for i in range(n)
    ]


async def test_outputs_reach_a_run_on_this_server_and_on_another(tmp_path: Path) -> None:
    async with (
        live_server(settings_for(tmp_path, "a")) as (url_a, _),
        live_server(settings_for(tmp_path, "b")) as (url_b, _),
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        # ProcID and RunID differ on purpose (the original mixed them up).
        await configure(a, "noop", "next-here", num_chunks=3)
        await configure(b, "noop", "next-there", num_chunks=3)
        await configure_sender(
            a,
            "first",
            3,
            [
                location(host(url_a), "noop", "next-here"),
                location(host(url_b), "noop", "next-there"),
            ],
        )
        assert (await add(a, "noop", "first", chunks(3))).is_success

        first = await wait_run_done(a, "noop", "first")
        assert first["CurrentState"] == "SUCCEEDED"
        for http, run in ((a, "next-here"), (b, "next-there")):
            assert (await wait_run_done(http, "noop", run))["CurrentState"] == "SUCCEEDED"
            data = (await http.get(f"{run_path('noop', run)}/data")).json()
            got = sorted((c["ChunkID"], c["RawData"]["i"]) for c in data["In"])
            assert got == [("out0", 0), ("out1", 1), ("out2", 2)]
            assert {c["Type"] for c in data["In"]} == {"INPUT"}
        sent = (await a.get(f"{run_path('noop', 'first')}/data")).json()
        assert all("DeliveryError" not in out for out in sent["Out"])


async def test_a_chain_across_servers_with_batches(tmp_path: Path) -> None:
    """a → b → a: each hop's outputs become the next hop's inputs, whole."""
    async with (
        live_server(settings_for(tmp_path, "a")) as (url_a, _),
        live_server(settings_for(tmp_path, "b")) as (url_b, _),
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        await configure(a, "noop", "last", num_chunks=20)
        await configure_sender(b, "middle", 20, [location(host(url_a), "noop", "last")])
        await configure_sender(a, "start", 20, [location(host(url_b), "noop", "middle")])
        assert (await add(a, "noop", "start", chunks(20))).json()["Accepted"] == 20
        assert (await wait_run_done(a, "noop", "last"))["CurrentState"] == "SUCCEEDED"
        data = (await a.get(f"{run_path('noop', 'last')}/data")).json()
        assert sorted(c["RawData"]["i"] for c in data["Out"]) == list(range(20))
        # Each hop asks the next run to name its output after that run.
        assert sorted(c["ChunkID"] for c in data["In"]) == sorted(
            f"out{i}-middle" for i in range(20)
        )
        assert sorted(c["ChunkID"] for c in data["Out"]) == sorted(
            f"out{i}-middle-last" for i in range(20)
        )


async def test_parallel_branches_hand_a_join_distinct_chunks(tmp_path: Path) -> None:
    """start fans out to b1 and b2, which both feed join: the join gets every output of
    both branches, none taken for a resend of the other branch's."""
    async with (
        live_server(settings_for(tmp_path, "a")) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        here = host(url)
        await configure(http, "noop", "join", num_chunks=6)
        for branch in ("b1", "b2"):
            await configure_sender(http, branch, 3, [location(here, "noop", "join")])
        await configure_sender(
            http, "start", 3, [location(here, "noop", "b1"), location(here, "noop", "b2")]
        )
        assert (await add(http, "noop", "start", chunks(3))).json()["Accepted"] == 3
        assert (await wait_run_done(http, "noop", "join"))["CurrentState"] == "SUCCEEDED"
        data = (await http.get(f"{run_path('noop', 'join')}/data")).json()
        assert sorted(c["ChunkID"] for c in data["In"]) == sorted(
            f"out{i}-{b}" for i in range(3) for b in ("b1", "b2")
        )


async def test_delivery_retries_until_the_downstream_accepts(tmp_path: Path) -> None:
    stub = FlakyDownstream([503, 429, 503])
    async with (
        serve_asgi(stub) as stub_host,
        live_server(settings_for(tmp_path, "a", attempts=4)) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        await configure_sender(http, "r", 2, [location(stub_host, "next", "run-2")])
        assert (await add(http, "noop", "r", chunks(2))).is_success
        run = await wait_run_done(http, "noop", "r")
        assert run["CurrentState"] == "SUCCEEDED"
    assert stub.tries == {"out0": 4, "out1": 4}
    assert {path for path, _ in stub.requests} == {"/processors/next/runs/run-2/data"}
    accepted = sorted(stub.accepted(), key=lambda c: c["ChunkID"])
    assert [(c["ChunkID"], c["RawData"], c["Type"]) for c in accepted] == [
        ("out0", {"i": 0}, "INPUT"),
        ("out1", {"i": 1}, "INPUT"),
    ]
    # Every retry of a chunk sent the same body, so a downstream can de-duplicate it.
    for chunk_id in ("out0", "out1"):
        bodies = [
            {k: v for k, v in c.items() if k != "_status"}
            for _, c in stub.requests
            if c["ChunkID"] == chunk_id
        ]
        assert all(body == bodies[0] for body in bodies)


@pytest.mark.parametrize(
    ("refusals", "error"),
    [
        ([503], "gave up after 3 attempts; last: HTTP 503: stub: not now"),
        ([400], "HTTP 400: stub: not now"),  # a 4xx other than 429 is not retried
    ],
)
async def test_a_delivery_that_finally_fails_is_recorded(
    tmp_path: Path, refusals: list[int], error: str
) -> None:
    stub = FlakyDownstream(refusals, forever=True)
    async with (
        serve_asgi(stub) as stub_host,
        live_server(settings_for(tmp_path, "a", attempts=3)) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        await configure_sender(http, "r", 1, [location(stub_host, "next", "r2")])
        assert (await add(http, "noop", "r", chunks(1))).is_success
        run = await wait_run_done(http, "noop", "r")
        assert run["CurrentState"] == "ERRORED"
        assert run["ChunkCounts"]["SUCCEEDED"] == 1  # the chunk itself did succeed
        out = (await http.get(f"{run_path('noop', 'r')}/data/output/out0")).json()
        assert out["State"] == "SUCCEEDED"
        assert out["DeliveryError"] == f"{stub_host} next/r2: {error}"
    assert stub.tries["out0"] == (3 if refusals == [503] else 1)


async def test_unreachable_and_unknown_downstreams_are_reported(tmp_path: Path) -> None:
    nowhere = closed_port()
    async with (
        live_server(settings_for(tmp_path, "a", attempts=2)) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        await configure_sender(
            http,
            "r",
            1,
            [location(nowhere, "noop", "x"), location(host(url), "noop", "missing")],
        )
        assert (await add(http, "noop", "r", chunks(1))).is_success
        assert (await wait_run_done(http, "noop", "r"))["CurrentState"] == "ERRORED"
        error = (await http.get(f"{run_path('noop', 'r')}/data/output/out0")).json()[
            "DeliveryError"
        ]
        assert f"{nowhere} noop/x: gave up after 2 attempts; last: ConnectError" in error
        assert f"{host(url)} noop/missing: HTTP 404: no run 'missing'" in error


async def test_configure_refuses_a_downstream_location_with_empty_fields(
    client: httpx.AsyncClient,
) -> None:
    for empty in ("Hostname", "ProcID", "RunID"):
        location = {"Hostname": "127.0.0.1:1", "ProcID": "noop", "RunID": "next"}
        location[empty] = ""
        resp = await client.post(
            "/processors/noop/runs/up/config",
            json={"ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": [location]}},
        )
        assert resp.status_code == 400, resp.text
        assert empty in resp.json()["value"]
    assert (await client.get("/processors/noop/runs/up")).status_code == 404


async def test_an_output_queued_as_the_last_sender_ends_is_still_sent() -> None:
    """A sender that found the queue empty has ended, but its task leaves the sender
    set only in a later loop pass. An output queued in between must still get a
    sender, or it waits for the next output (never, for a run's last one: the run
    would stay RUNNING)."""
    posted: list[bytes] = []

    def accept(request: httpx.Request) -> httpx.Response:
        posted.append(request.content)
        return httpx.Response(200, json={"Accepted": 1, "Duplicates": 0})

    runs = RunMap()
    config = Configuration.model_validate(
        {
            "ExecutorConfig": {
                "SendDownstream": True,
                "DownstreamLocations": [{"Hostname": "h:1", "ProcID": "p", "RunID": "next"}],
            }
        }
    )
    run = Run("noop", "r", config, ProcessorConfig(), 1, WorkModel.POOL, None)
    runs.insert(run)
    async with httpx.AsyncClient(transport=httpx.MockTransport(accept)) as http:
        downstream = Downstream(runs, http, senders=1)
        for name in ("a", "b"):
            chunk = Chunk(name, f"{name}-out", DataFormat.RAW, None, "", "", False)
            runs.delivery_started(run)
            downstream.deliver(run, chunk)
            (sender,) = downstream._senders
            # One loop pass at a time, to act right after the sender ends (an event
            # would be set by a done-callback, a pass too late).
            while not sender.done():  # noqa: ASYNC110
                await asyncio.sleep(0)  # noqa: sleep-ok (one loop pass, not a wait)
        await wait_for(lambda: run.deliveries_pending == 0, what="both outputs delivered")
    assert len(posted) == 2


@pytest.mark.parametrize("hostname", ["bad host:abc", "127.0.0.1:99999"])
async def test_a_downstream_address_httpx_cannot_use_is_a_delivery_error(
    executor: Executor, client: httpx.AsyncClient, hostname: str
) -> None:
    """An address that is not a URL at all (httpx raises InvalidURL, or an exception
    group for a port out of range) fails the delivery with that reason; it used to
    kill the sender and be reported as "executor shut down"."""
    location = {"Hostname": hostname, "ProcID": "noop", "RunID": "next"}
    await configure(
        client, "noop", "r", num_chunks=1, SendDownstream=True, DownstreamLocations=[location]
    )
    assert (await add(client, "noop", "r", {"ChunkID": "c"})).is_success
    await executor.wait("noop", "r", timeout=10)
    output = (await client.get(run_path("noop", "r") + "/data/output/c-out")).json()
    assert output["State"] == "SUCCEEDED"
    assert "shut down" not in output["DeliveryError"]
    assert hostname in output["DeliveryError"]
    assert executor.runs.get("noop", "r").state.value == "ERRORED"


async def test_a_retry_after_given_as_an_http_date_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Retry-After` may be an HTTP-date (RFC 9110) as well as seconds. Delivery used to
    read a date as 0 and come back after its 0.1 s backoff, hammering a downstream that
    had said when to return. The wait is recorded, not slept."""
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    answers = [
        httpx.Response(503, headers={"Retry-After": when}, json={"value": "maintenance"}),
        httpx.Response(200, json={"Accepted": 1, "Duplicates": 0}),
    ]
    chunk, waits = await deliver_one(answers, monkeypatch, attempts=3, backoff=0.1)
    assert not answers, "the output was sent twice: refused, then accepted"
    assert chunk.delivery_error is None
    assert waits, "no wait before the retry"
    assert 18 <= max(waits) <= 20, waits  # the date, 20 s ahead (HTTP-dates have whole seconds)
