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

T = TypeVar("T")

MARK = "BENCH-RESULT "


def run_child(module: str, params: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run `python -m module '<params>'` and return the JSON object it reported."""
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            return result
    raise RuntimeError(
        f"benchmark child {module} {params} failed (exit {proc.returncode}):\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
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
