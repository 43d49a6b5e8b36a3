"""Scenario 7: live control. How fast a change to a running run takes effect.

In a fresh process, an executor (in process, no HTTP) runs chunks of a processor that
takes a fixed 20 ms per chunk on an asyncio sleep, so throughput is worker-bound: N
workers finish N chunks every 20 ms. The processor records when each chunk starts
and ends.

- **Raise**: a run with `MaxWorkers` 1 runs for 0.3 s; then `change_run(MaxWorkers=8)`
  (what `PATCH …/config` calls). The steady 8-worker rate is measured over the 0.7 s
  that follow the first 0.3 s after the change; the *reaction* is the time from the
  change until the rolling throughput, counted over one chunk's time (20 ms), first
  reaches 90% of that steady rate. A new worker's first chunk cannot end sooner than
  20 ms after it starts, so 20 ms of it is the processor's own. Also reported: the time
  until 8 chunks run at once.
- **Switch**: a run with `MaxWorkers` 8 on one work model for 0.3 s, then
  `change_run(WorkModel=<the other>)`: the old model's chunks in flight finish (the
  *drain*: from the change until the last of them ends), then the new model starts
  the held chunks. The *overhead* is the time from the end of the drain until the new
  model's first chunk starts: the switch costs the drain plus that. Both directions.

Each repetition also checks that no chunk started twice.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from time import monotonic
from typing import Any

from wiz_executor import (
    Configuration,
    Context,
    Executor,
    ExecutorConfig,
    Input,
    Processor,
    ProcessorConfig,
    RunChange,
    Settings,
    WorkModel,
)
from wiz_executor.wire import decode_chunks

from ._child import params_from_argv, report, run_child, run_on_uvloop
from ._machine import flags
from ._stats import Summary

CHUNK_SECONDS = 0.02
BEFORE = 0.3
"""Seconds the run works before the change."""
AFTER = 1.0
"""Seconds measured after it; the steady rate is taken over its last `AFTER - SETTLE`."""
SETTLE = 0.3
RAISED_TO = 8
TARGET_REACTION_MS = 100.0
TARGET_OVERHEAD_MS = 5.0


class Timeline:
    """When each chunk started and ended (monotonic seconds), and which are running."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.starts: list[tuple[float, str]] = []
        self.ends: list[float] = []
        self.running: dict[str, float] = {}
        self.ended: dict[str, float] = {}


def timed_processor(timeline: Timeline) -> type[Processor[Any]]:
    class Timed(Processor[ProcessorConfig]):
        id = "timed"
        name = "Fixed time per chunk (benchmark)"
        version = "0.1.0"

        async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            start = monotonic()
            timeline.starts.append((start, data.chunk_id))
            timeline.running[data.chunk_id] = start
            try:
                await asyncio.sleep(CHUNK_SECONDS)
            finally:
                end = monotonic()
                del timeline.running[data.chunk_id]
                timeline.ended[data.chunk_id] = end
                timeline.ends.append(end)
            return data.raw_data

    return Timed


def settings(data_dir: Path = Path("wiz-data")) -> Settings:
    return Settings(data_dir=data_dir, ephemeral=True, max_workers=16)


def _body(prefix: str, n: int) -> bytes:
    items = [f'{{"ChunkID":"{prefix}-{i}","RawData":{i}}}' for i in range(n)]
    return ("[" + ",".join(items) + "]").encode()


def _start(ex: Executor, run_id: str, workers: int, model: WorkModel) -> None:
    config = Configuration(ExecutorConfig=ExecutorConfig(MaxWorkers=workers, WorkModel=model))
    ex.configure("timed", run_id, config)
    # More than the run can finish in the time measured: it never runs dry.
    n = int((BEFORE + AFTER) / CHUNK_SECONDS * RAISED_TO * 1.5)
    ex.add_chunks("timed", run_id, decode_chunks(_body(run_id, n)))


def _reaction(timeline: Timeline, changed: float) -> dict[str, float]:
    ends = sorted(e for e in timeline.ends if e > changed)
    steady_from, steady_to = changed + SETTLE, changed + AFTER
    steady = sum(1 for e in ends if steady_from <= e <= steady_to) / (steady_to - steady_from)
    reached = float("nan")
    window = CHUNK_SECONDS
    for i, end in enumerate(ends):
        inside = sum(1 for e in ends[: i + 1] if e > end - window)
        if inside / window >= 0.9 * steady:
            reached = end - changed
            break
    # When RAISED_TO chunks first ran at once, counted from the starts and ends.
    active = sum(1 for t, _ in timeline.starts if t <= changed) - sum(
        1 for t in timeline.ends if t <= changed
    )
    events = sorted(
        [(t, 1) for t, _ in timeline.starts if t > changed]
        + [(t, -1) for t in timeline.ends if t > changed]
    )
    all_running = float("nan")
    for t, step in events:
        active += step
        if active >= RAISED_TO:
            all_running = t - changed
            break
    return {
        "steady_per_s": steady,
        "reaction_ms": reached * 1000,
        "all_running_ms": all_running * 1000,
    }


def _switch(timeline: Timeline, changed: float, in_flight: list[str]) -> dict[str, float]:
    drain = max((timeline.ended[c] for c in in_flight), default=changed) - changed
    first_new = min((s for s, _ in timeline.starts if s > changed), default=float("nan"))
    gap = first_new - changed
    return {
        "in_flight": len(in_flight),
        "drain_ms": drain * 1000,
        "gap_ms": gap * 1000,
        "overhead_ms": (gap - drain) * 1000,
    }


async def measure() -> dict[str, Any]:
    out: dict[str, Any] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with Executor(settings(Path(tmp))) as ex:
            timeline = Timeline()
            ex.registry.register(timed_processor(timeline))
            _start(ex, "raise", 1, WorkModel.POOL)
            await asyncio.sleep(BEFORE)
            changed = monotonic()
            ex.change_run("timed", "raise", RunChange(MaxWorkers=RAISED_TO))
            await asyncio.sleep(AFTER)
            await ex.delete_run("timed", "raise")
            out["raise"] = _reaction(timeline, changed)
            for old, new in (
                (WorkModel.POOL, WorkModel.LIFETIME),
                (WorkModel.LIFETIME, WorkModel.POOL),
            ):
                timeline.reset()
                name = f"{old.value.lower()}-to-{new.value.lower()}"
                _start(ex, name, RAISED_TO, old)
                await asyncio.sleep(BEFORE)
                in_flight = list(timeline.running)
                changed = monotonic()
                ex.change_run("timed", name, RunChange(WorkModel=new))
                await asyncio.sleep(AFTER / 2)
                await ex.delete_run("timed", name)
                out[name] = _switch(timeline, changed, in_flight)
                ids = [c for _, c in timeline.starts]
                if len(ids) != len(set(ids)):
                    problems.append(f"{name}: a chunk started twice")
    out["problems"] = problems
    return out


SWITCHES = ("pool-to-lifetime", "lifetime-to-pool")


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    raw = [run_child("benchmarks.control", {}, timeout=120) for _ in range(reps)]
    log("  control: done")
    summary: dict[str, dict[str, Summary]] = {
        "raise": {
            m: Summary.of([r["raise"][m] for r in raw])
            for m in ("steady_per_s", "reaction_ms", "all_running_ms")
        }
    }
    for name in SWITCHES:
        summary[name] = {
            m: Summary.of([r[name][m] for r in raw])
            for m in ("in_flight", "drain_ms", "gap_ms", "overhead_ms")
        }
    return {
        "flags": flags(settings()),
        "raw": raw,
        "summary": summary,
        "problems": sorted({p for r in raw for p in r["problems"]}),
    }


def _main() -> None:
    params_from_argv()
    report(run_on_uvloop(measure()))


if __name__ == "__main__":
    sys.exit(_main())
