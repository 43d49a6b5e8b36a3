"""Downstream outages are ridden out: deliveries back off up to a cap for a window
(`delivery_timeout`), honour `Retry-After` within it, probe a dead host one request at a
time, and fail with their reason only once the window has passed; shutdown does not
wait for the window."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, configure, run_path
from _stub_server import FlakyDownstream, serve_asgi
from conftest import live_server, wait_for, wait_run_done
from wiz_executor import (
    Configuration,
    DataFormat,
    Executor,
    ProcessorConfig,
    Settings,
    WorkModel,
    create_app,
)
from wiz_executor.downstream import Downstream
from wiz_executor.runs import Chunk, Run, RunMap

pytestmark = pytest.mark.anyio


class Outage:
    """An ASGI app in front of another that answers 503 while `down`, holding each
    refusal a few loop passes so that requests sent together overlap, and counting how
    many it held at once of those sent once the sender could know it was down (after
    its first refusal: the first requests go out before anything has failed)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.down = True
        self.refused: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.down:
            await self.app(scope, receive, send)
            return
        known_down = sum(self.refused.values()) > 0
        if known_down:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(20):  # let other requests in meanwhile, if any are sent
                await asyncio.sleep(0)  # noqa: sleep-ok (one loop pass, not a wait)
            self.refused[scope["path"]] += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"value":"down"}'})
        finally:
            if known_down:
                self.in_flight -= 1


def sender_settings(tmp_path: Path, **kwargs: Any) -> Settings:
    """Small delays, so that a test outage is short; no attempt bound, as by default."""
    options: dict[str, Any] = {"downstream_backoff": 0.01, "delivery_backoff_cap": 0.1}
    return Settings(data_dir=tmp_path / "a", **(options | kwargs))


def chunks(n: int) -> list[dict[str, Any]]:
    return [
        {"ChunkID": f"in{i}", "AssociatedChunkID": f"out{i}", "RawData": {"i": i}} for i in range(n)
    ]


async def test_an_outage_longer_than_the_old_retry_budget_loses_nothing(tmp_path: Path) -> None:
    """B is down (503) for longer than delivery used to try (5 attempts, ~1.5 s with
    the default backoff): every output of A still reaches B exactly once, A ends
    SUCCEEDED with no delivery error, and B never saw more than one request at a time
    while it was down."""
    n = 30
    async with Executor(Settings(data_dir=tmp_path / "b")) as executor_b:
        outage = Outage(create_app(executor=executor_b))
        async with (
            serve_asgi(outage) as host_b,
            live_server(sender_settings(tmp_path)) as (url_a, executor_a),
            httpx.AsyncClient(base_url=url_a) as a,
            asgi_client(executor_b) as b,
        ):
            await configure(b, "noop", "next", num_chunks=n)
            where = [{"Hostname": host_b, "ProcID": "noop", "RunID": "next"}]
            await configure(
                a, "noop", "first", num_chunks=n, SendDownstream=True, DownstreamLocations=where
            )
            assert (await add(a, "noop", "first", chunks(n))).json()["Accepted"] == n
            refused = outage.refused.__getitem__
            path = run_path("noop", "next") + "/data"
            # 15 refusals, at 0.01 s doubling to the 0.1 s cap: about 1.5 s of outage.
            await wait_for(lambda: refused(path) >= 15, 30, "B to refuse 15 deliveries")
            assert executor_a.downstream is not None
            assert executor_a.downstream.host_down(host_b)
            assert (await a.get(run_path("noop", "first"))).json()["CurrentState"] == "RUNNING"
            outage.down = False

            assert (await wait_run_done(a, "noop", "first", 30))["CurrentState"] == "SUCCEEDED"
            assert (await wait_run_done(b, "noop", "next"))["CurrentState"] == "SUCCEEDED"
            data = (await b.get(run_path("noop", "next") + "/data")).json()
            assert sorted(c["ChunkID"] for c in data["In"]) == sorted(f"out{i}" for i in range(n))
            sent = (await a.get(run_path("noop", "first") + "/data")).json()
            assert [o for o in sent["Out"] if "DeliveryError" in o] == []
            assert not executor_a.downstream.host_down(host_b)
    assert outage.most_in_flight == 1, "the dead host was sent several requests at once"


async def test_a_delivery_fails_with_its_reason_once_its_window_has_passed(
    tmp_path: Path,
) -> None:
    stub = FlakyDownstream([503], forever=True)
    settings = sender_settings(tmp_path, delivery_timeout=0.3)
    async with (
        serve_asgi(stub) as stub_host,
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        where = [{"Hostname": stub_host, "ProcID": "next", "RunID": "r2"}]
        await configure(
            http, "noop", "r", num_chunks=3, SendDownstream=True, DownstreamLocations=where
        )
        assert (await add(http, "noop", "r", chunks(3))).is_success
        assert (await wait_run_done(http, "noop", "r"))["CurrentState"] == "ERRORED"
        out = (await http.get(run_path("noop", "r") + "/data")).json()["Out"]
    assert len(out) == 3
    for output in out:
        assert output["State"] == "SUCCEEDED"
        error = output["DeliveryError"]
        assert error.startswith(f"{stub_host} next/r2: gave up after "), error
        assert "0.3 s delivery window (--delivery-timeout)" in error
        assert error.endswith("last: HTTP 503: stub: not now"), error


@pytest.mark.parametrize(("asked", "low", "high"), [("3", 3.0, 3.0), ("50", 4.0, 5.0)])
async def test_retry_after_is_honoured_past_the_backoff_cap_but_not_past_the_window(
    monkeypatch: pytest.MonkeyPatch, asked: str, low: float, high: float
) -> None:
    """A downstream asking for 3 s gets 3 s although the backoff cap is 1 s; one asking
    for 50 s gets what is left of the 5 s window. The waits are recorded, not slept."""
    answers = [
        httpx.Response(503, headers={"Retry-After": asked}, json={"value": "maintenance"}),
        httpx.Response(200, json={"Accepted": 1, "Duplicates": 0}),
    ]
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def record_wait(delay: float, result: Any = None) -> Any:
        waits.append(delay)
        return await real_sleep(0, result)

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
    chunk = Chunk("a", "a-out", DataFormat.RAW, None, "", "", False)
    transport = httpx.MockTransport(lambda request: answers.pop(0))
    async with httpx.AsyncClient(transport=transport) as http:
        downstream = Downstream(runs, http, backoff=0.01, senders=1, cap=1.0, timeout=5.0)
        monkeypatch.setattr(asyncio, "sleep", record_wait)
        runs.delivery_started(run)
        downstream.deliver(run, chunk)
        (sender,) = downstream._senders
        await sender
        monkeypatch.undo()
    assert not answers, "not retried after the Retry-After"
    assert chunk.delivery_error is None
    assert len(waits) == 1
    assert low <= waits[0] <= high, waits


async def test_shutdown_does_not_wait_for_the_delivery_window(tmp_path: Path) -> None:
    """With an hour's window and a dead downstream, shutdown gives the pending delivery
    the grace period, then stops it and records why."""
    stub = FlakyDownstream([503], forever=True)
    settings = sender_settings(tmp_path, shutdown_grace=0.2)
    async with serve_asgi(stub) as stub_host:
        executor = Executor(settings)
        async with executor, asgi_client(executor) as http:
            where = [{"Hostname": stub_host, "ProcID": "next", "RunID": "r2"}]
            await configure(
                http, "noop", "r", num_chunks=1, SendDownstream=True, DownstreamLocations=where
            )
            assert (await add(http, "noop", "r", chunks(1))).is_success
            await wait_for(lambda: stub.tries["out0"] >= 2, what="the delivery being retried")
        # (the per-test timeout fails this test if shutdown waits for the window)
        run = executor.runs.get("noop", "r")
        assert run.state.value == "ERRORED"
        assert run.chunk("in0").delivery_error == (
            f"{stub_host} next/r2: executor shut down before the output was delivered"
        )
