"""Running a measurement in a fresh Python process, so that its memory and CPU figures
belong to it alone: the parent passes parameters as JSON and reads one JSON line back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from ._rss import RssSampler

T = TypeVar("T")

MARK = "BENCH-RESULT "


def run_child(module: str, params: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run `python -m module '<params>'` and return the JSON object it reported."""
    result, _ = _run(module, params, timeout, sample_rss=False)
    return result


def run_child_sampled(
    module: str, params: dict[str, Any], timeout: float = 300
) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """`run_child`, sampling the child's RSS all along (see `_rss`): its result and the
    (time.monotonic(), RSS bytes) samples."""
    return _run(module, params, timeout, sample_rss=True)


def _run(
    module: str, params: dict[str, Any], timeout: float, sample_rss: bool
) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    with subprocess.Popen(
        [sys.executable, "-m", module, json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        sampler = RssSampler(proc.pid) if sample_rss else None
        try:
            if sampler is not None:
                with sampler:
                    stdout, stderr = proc.communicate(timeout=timeout)
            else:
                stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    for line in stdout.splitlines():
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            return result, sampler.samples if sampler is not None else []
    raise RuntimeError(
        f"benchmark child {module} {params} failed (exit {proc.returncode}):\n"
        f"{stdout[-2000:]}\n{stderr[-4000:]}"
    )


def report(result: dict[str, Any]) -> None:
    """What a child calls last: hand its result to the parent."""
    print(MARK + json.dumps(result), flush=True)


def params_from_argv() -> dict[str, Any]:
    params: dict[str, Any] = json.loads(sys.argv[1])
    return params


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run on the loop the server runs on (uvicorn picks uvloop when it is installed)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
