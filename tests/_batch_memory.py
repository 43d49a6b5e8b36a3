"""Measure what one huge AddData batch costs: run as a script, in a fresh process.

`python tests/_batch_memory.py reject|accept DATA_DIR` configures a run, sends one body of
1,000,000 identical tiny chunks through the real ASGI app (the AddData fast path), and
prints JSON: the answer, the body size, the peak RSS growth the request caused, and the
longest gap between two turns of the event loop while it was handled (the loop thread's
CPU time in it, and the wall-clock gap; see `_lag`). A fresh process,
so the peak RSS is this request's alone and no other test's garbage blurs it.

The peak is the kernel's `VmHWM` of this process's own memory, not `ru_maxrss`: Linux
carries `ru_maxrss` over from the parent across fork and exec, so the child of a pytest
process that had grown to 400 MB reported a 400 MB "peak" whatever it did itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import psutil

from _lag import LagProbe
from wiz_executor import Executor, Settings, create_app
from wiz_executor.api import Configuration

ITEMS = 1_000_000


def body_of_identical_chunks(n: int) -> bytes:
    # Built without a list of n items, so building it does not raise the peak RSS
    # by more than the body itself.
    one = b'{"ChunkID":"a"}'
    return b"[" + (one + b",") * (n - 1) + one + b"]"


def reset_peak_rss() -> None:
    """Start this process's peak RSS (VmHWM) afresh (Linux: `clear_refs` 5).

    Not `ru_maxrss`: it keeps the peak since the process started, and a child of a big
    process (pytest after a 100k-chunk test) starts with its parent's peak, since Linux
    carries the high-water mark over fork and exec."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss() -> int:
    """This process's peak RSS since `reset_peak_rss`, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def main(mode: str, data_dir: Path) -> dict[str, Any]:
    body = body_of_identical_chunks(ITEMS)
    settings = Settings(
        data_dir=data_dir,
        max_body_bytes=64 * 1024 * 1024,
        max_pending=1000 if mode == "reject" else 2 * ITEMS,
    )
    async with Executor(settings) as executor:
        app = create_app(executor=executor)
        executor.configure(
            "noop", "r", Configuration.model_validate({"ExpectedData": {"NumChunks": 1}})
        )
        sent = False
        answer: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            else:
                answer["body"] += message.get("body", b"")

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/processors/noop/runs/r/data",
            "raw_path": b"/processors/noop/runs/r/data",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "app": app,
        }
        reset_peak_rss()
        rss_before = psutil.Process().memory_info().rss
        probe = LagProbe()
        await app(scope, receive, send)
        lag = await probe.stop()
        peak = peak_rss()
    return {
        "status": answer["status"],
        "answer": json.loads(answer["body"]),
        "body_bytes": len(body),
        "peak_growth_bytes": max(0, peak - rss_before),
        "max_loop_cpu_s": lag.cpu,
        "max_loop_gap_s": lag.wall,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], Path(sys.argv[2])))))
