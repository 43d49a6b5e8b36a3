"""Back pressure travels across executors: a fast upstream A sends every output to a
slow run on executor B, which holds few chunks waiting (`--max-pending`). A reads B's
free room from its answers (`X-Wiz-Free-Room`) and slows to B's pace instead of sending
into 429s: B answers only a bounded number of 429s (counted by B's own /metrics), no
delivery fails, and B ends with every output of A exactly once.

Both are real `wiz executor` processes on 127.0.0.1, as in the durability pipeline test.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from _wiz_process import WizProcess, chunk, configure, get_json, run_path, wait_finished

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
