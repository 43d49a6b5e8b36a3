"""Back pressure travels across executors: a fast upstream A sends every output to a
slow run on executor B, which holds few chunks waiting (`--max-pending`). A reads B's
free room from its answers (`X-Wiz-Free-Room`) and slows to B's pace instead of sending
into 429s: B answers only a bounded number of 429s (counted by B's own /metrics), no
delivery fails, and B ends with every output of A exactly once.

Both are real `wiz executor` processes on 127.0.0.1, as in the durability pipeline test.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from _wiz_process import WizProcess, chunk, configure, get_json, run_path, wait_finished
from wiz_executor import Configuration, DataFormat, ProcessorConfig, WorkModel
from wiz_executor.downstream import Downstream
from wiz_executor.runs import Chunk, Run, RunMap

pytestmark = pytest.mark.anyio

TOTAL = 150
MAX_PENDING = 4
"""B's --max-pending: it holds at most this many chunks waiting, across its runs."""
MOST_429 = 15
"""The bound on B's 429s (2 in a run of this test under load). Before A read B's room,
its 16 senders per host sent into a full B again after every wait: 66 429s in a run."""


def refusals(metrics: str) -> int:
    """AddData answers B gave with 429, from its Prometheus text."""
    found = re.findall(
        r'^wiz_http_requests_total\{method="POST",route="([^"]*)",status="429"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    return int(sum(float(n) for route, n in found if route.endswith("/data")))


async def test_a_slow_downstream_slows_its_upstream_without_a_429_storm(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    b = WizProcess(tmp_path / "b", "--max-pending", str(MAX_PENDING))
    a = WizProcess(tmp_path / "a", "--downstream-backoff", "0.01")
    ids = [f"c{i:04d}" for i in range(TOTAL)]
    try:
        await b.start()
        await a.start()
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=30) as to_a,
            httpx.AsyncClient(base_url=b.url, timeout=30) as to_b,
        ):
            # B: one worker, 5 ms a chunk: far slower than A hands it outputs.
            await configure(
                to_b,
                "noop",
                "sink",
                {"SleepMs": 5},
                MaxWorkers=1,
                extra={"ExpectedData": {"NumChunks": TOTAL}},
            )
            # A: no work at all, 4 workers: its outputs are ready at once.
            await configure(
                to_a,
                "noop",
                "src",
                {},
                MaxWorkers=4,
                SendDownstream=True,
                DownstreamLocations=[
                    {"Hostname": f"127.0.0.1:{b.port}", "ProcID": "noop", "RunID": "sink"}
                ],
                extra={"ExpectedData": {"NumChunks": TOTAL}},
            )
            for i in range(0, TOTAL, 50):
                resp = await to_a.post(
                    run_path("noop", "src") + "/data", json=[chunk(c) for c in ids[i : i + 50]]
                )
                assert resp.status_code == 200, resp.text

            run_b = await wait_finished(to_b, "noop", "sink", timeout=120)
            run_a = await wait_finished(to_a, "noop", "src", timeout=30)
            final_a = await get_json(to_a, run_path("noop", "src") + "/data")
            final_b = await get_json(to_b, run_path("noop", "sink") + "/data")
            metrics = (await to_b.get("/metrics")).text
    finally:
        await a.stop()
        await b.stop()

    assert run_a["CurrentState"] == "SUCCEEDED", run_a
    assert not [c for c in final_a["Out"] if c.get("DeliveryError")], "a delivery failed"
    assert run_b["CurrentState"] == "SUCCEEDED", run_b
    received = sorted(c["ChunkID"] for c in final_b["In"])
    assert received == sorted(f"{c}-out" for c in ids)  # every output, each once
    assert {c["State"] for c in final_b["In"]} == {"SUCCEEDED"}
    assert "wiz_http_requests_total" in metrics
    assert refusals(metrics) <= MOST_429, refusals(metrics)


class Receiver:
    """A mock downstream that answers every AddData 200 after a few loop passes (so
    that requests sent together overlap), saying `room` in `X-Wiz-Free-Room` (nothing
    when None), and counts the most requests it held at once."""

    def __init__(self, room: int | None) -> None:
        self.room = room
        self.in_flight = 0
        self.most_in_flight = 0
        self.first_alone = False
        self.received = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(10):
                await asyncio.sleep(0)  # noqa: sleep-ok (one loop pass, not a wait)
            if self.received == 0:
                self.first_alone = self.in_flight == 1
            self.received += 1
        finally:
            self.in_flight -= 1
        headers = {} if self.room is None else {"X-Wiz-Free-Room": str(self.room)}
        return httpx.Response(200, json={"Accepted": 1, "Duplicates": 0}, headers=headers)


async def deliver_all(receiver: Receiver, n: int) -> RunMap:
    """Deliver `n` outputs of one run to `receiver` with a Downstream of 16 senders."""
    runs = RunMap()
    where = [{"Hostname": "h:1", "ProcID": "p", "RunID": "next"}]
    config = Configuration.model_validate(
        {"ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": where}}
    )
    run = Run("noop", "r", config, ProcessorConfig(), 1, WorkModel.POOL, None)
    runs.insert(run)
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        downstream = Downstream(runs, http, backoff=0.001)
        for i in range(n):
            output = Chunk(f"c{i}", f"c{i}-out", DataFormat.RAW, None, "", "", False)
            runs.delivery_started(run)
            downstream.deliver(run, output)
        while senders := downstream._senders:
            await asyncio.gather(*senders)
    assert run.deliveries_pending == 0
    assert run.deliveries_failed == 0
    return runs


@pytest.mark.parametrize(("room", "most"), [(2, 2), (0, 1)])
async def test_sends_stay_within_the_room_the_receiver_reports(room: int, most: int) -> None:
    """The first send goes alone; then no more go at once than the receiver said it
    had room for (a full receiver: one probe at a time, each after its pace)."""
    receiver = Receiver(room)
    await deliver_all(receiver, 30)
    assert receiver.received == 30
    assert receiver.first_alone
    assert receiver.most_in_flight == most


async def test_a_receiver_that_does_not_report_its_room_is_sent_to_as_before() -> None:
    receiver = Receiver(None)  # (the Go executor)
    await deliver_all(receiver, 30)
    assert receiver.received == 30
    assert receiver.first_alone
    assert receiver.most_in_flight == 16  # every sender, once the first answer came
