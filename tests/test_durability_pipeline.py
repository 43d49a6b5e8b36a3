"""Two executors A -> B, B killed mid-run: nothing A produced is lost or doubled.

Both are real `wiz executor` processes on 127.0.0.1, each on its own data dir with the
journal on (the default). A's run sends every output downstream to B's run. B is slow,
so that when the test kills it with SIGKILL (once B holds K chunks) it has chunks
waiting and running, and A still has outputs on their way. B stays down for longer than
the retry budget the downstream had before it rode out outages (~1.5 s), with A's
backoff small so A keeps trying through it, and `--delivery-timeout` left long. Then B
starts again on the same data dir and port, and the test checks the issue's promise: B
ends with every output of A exactly once, each SUCCEEDED, and A ends SUCCEEDED with no
`DeliveryError`.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from _wiz_process import WizProcess, chunk, configure, get_json, run_path, wait_finished

pytestmark = pytest.mark.anyio

TOTAL = 400
KILL_AFTER = 100
"""B is killed once it holds this many chunks (acknowledged to A), about a quarter in."""
OUTAGE = 3.0
"""Seconds B stays down: twice the ~1.5 s after which the old downstream gave up."""


async def held_by(client: httpx.AsyncClient, proc: str, run: str) -> dict[str, int]:
    """The run's input chunks by state (GetRun's `ChunkCounts`)."""
    counts: dict[str, int] = (await get_json(client, run_path(proc, run)))["ChunkCounts"]
    return counts


@pytest.mark.parametrize("model", ["POOL", "LIFETIME"])
async def test_downstream_killed_and_restarted_loses_and_doubles_nothing(
    tmp_path: Path, model: str
) -> None:
    """A -> B, B SIGKILLed after K chunks and down for OUTAGE seconds: B ends with
    exactly A's outputs, each once and SUCCEEDED; A ends SUCCEEDED, nothing failed."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    b = WizProcess(tmp_path / "b")
    # A retries often (50 ms doubling to 0.5 s), so it tries B many times while B is down;
    # its delivery window stays the default hour, far longer than the outage.
    a = WizProcess(tmp_path / "a", "--downstream-backoff", "0.05", "--delivery-backoff-cap", "0.5")
    ids = [f"c{i:04d}" for i in range(TOTAL)]
    try:
        await b.start()
        await a.start()
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=30) as to_a,
            httpx.AsyncClient(base_url=b.url, timeout=30) as to_b,
        ):
            # B: slow (2 workers, 20 ms a chunk, about 100 chunks/s at best), so chunks
            # wait and run when it is killed; it ends once it has finished all of A's.
            await configure(
                to_b,
                "noop",
                "sink",
                {"SleepMs": 20},
                WorkModel=model,
                MaxWorkers=2,
                extra={"ExpectedData": {"NumChunks": TOTAL}},
            )
            # A: 10 ms a chunk on 4 workers, so its outputs keep coming for a while and
            # deliveries are in flight when B dies.
            await configure(
                to_a,
                "noop",
                "src",
                {"SleepMs": 10},
                MaxWorkers=4,
                SendDownstream=True,
                DownstreamLocations=[
                    {"Hostname": f"127.0.0.1:{b.port}", "ProcID": "noop", "RunID": "sink"}
                ],
            )
            data_a = run_path("noop", "src") + "/data"

            async def sender(part: list[str], batch: int) -> None:
                for i in range(0, len(part), batch):
                    items = part[i : i + batch]
                    body = chunk(items[0]) if batch == 1 else [chunk(c) for c in items]
                    resp = await to_a.post(data_a, json=body)
                    assert resp.status_code == 200, resp.text

            parts = [ids[i::4] for i in range(4)]
            senders = [
                asyncio.create_task(sender(part, batch))
                for part, batch in zip(parts, (1, 1, 10, 7), strict=True)
            ]

            # Kill B once it holds K chunks: polled on B's GetRun, not timed.
            at_kill: dict[str, int] = {}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while sum((at_kill := await held_by(to_b, "noop", "sink")).values()) < KILL_AFTER:
                assert loop.time() < deadline, f"B never held {KILL_AFTER} chunks: {at_kill}"
                await asyncio.sleep(0.01)  # noqa: sleep-ok (poll interval)
            assert await b.kill(signal.SIGKILL) == -signal.SIGKILL
            # Killed mid-run, as intended: B had work waiting or running, and not all of
            # A's outputs had reached it.
            assert at_kill["WAITING"] + at_kill["RUNNING"] > 0, at_kill
            assert sum(at_kill.values()) < TOTAL, at_kill

            await asyncio.gather(*senders)  # A itself is unaffected: every AddData 200
            resp = await to_a.post(run_path("noop", "src") + "/end-of-input")
            assert resp.status_code == 200, resp.text

            # The outage: B stays down for OUTAGE seconds, a deliberate duration (not a
            # wait for something to happen), during which A must not give up on anything.
            outage_ends = loop.time() + OUTAGE
            while loop.time() < outage_ends:
                run_a = await get_json(to_a, run_path("noop", "src"))
                assert run_a["CurrentState"] == "RUNNING", run_a  # outputs still pending
                await asyncio.sleep(0.1)  # noqa: sleep-ok (poll interval of a fixed outage)
            with pytest.raises(httpx.ConnectError):
                await to_b.get("/healthz")  # B really was down all along

            await b.start()  # same data dir, same port
            run_b = await wait_finished(to_b, "noop", "sink", timeout=60)
            run_a = await wait_finished(to_a, "noop", "src", timeout=30)

            final_a = await get_json(to_a, data_a)
            final_b = await get_json(to_b, run_path("noop", "sink") + "/data")
        assert "recovered from" in b.stderr()

        assert run_a["CurrentState"] == "SUCCEEDED", run_a
        assert sorted(c["ChunkID"] for c in final_a["In"]) == ids
        outputs: list[dict[str, Any]] = final_a["Out"]
        assert len(outputs) == TOTAL
        assert not [c for c in outputs if c.get("DeliveryError")], "a delivery failed"

        assert run_b["CurrentState"] == "SUCCEEDED", run_b
        assert run_b["ChunkCounts"]["SUCCEEDED"] == TOTAL, run_b
        held = [c["ChunkID"] for c in final_b["In"]]
        assert len(held) == len(set(held)), "B holds a chunk twice"
        assert sorted(held) == sorted(c["ChunkID"] for c in outputs)  # none missing
        assert all(c["State"] == "SUCCEEDED" for c in final_b["In"])
        sent = {c["ChunkID"]: c["RawData"] for c in outputs}
        assert all(c["RawData"] == sent[c["ChunkID"]] for c in final_b["In"])
        assert len(final_b["Out"]) == TOTAL

        await a.kill(signal.SIGTERM)
        await b.kill(signal.SIGTERM)
    finally:
        await a.stop()
        await b.stop()
