"""What the executor counts about the chunks it runs, for the metrics endpoint.

Current state (chunks by state, runs, busy workers, queue depth) is read from the run
map and the limiter when metrics are scraped, so it costs nothing in between. What
cannot be read back later (how many chunks finished, how long each ran) is counted here
as it happens, by a run-map listener that does O(1) work per state change.

Everything runs on the event loop's thread, like the run map, so plain integers and
lists are enough: no lock, and no `prometheus_client` object on the hot path (its
metric objects take a lock per update). The server turns these numbers into the
Prometheus text format.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from time import perf_counter

from .api import DataChunkState
from .runs import Chunk, Run, RunMap

__all__ = ["CHUNK_BUCKETS", "ChunkStats", "Histogram", "ProcessorStats"]

CHUNK_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
"""Upper bounds (seconds) of the chunk-duration buckets: a no-op chunk takes tens of
microseconds, a real processor seconds to minutes."""

_WAITING = DataChunkState.WAITING
_RUNNING = DataChunkState.RUNNING
_SUCCEEDED = DataChunkState.SUCCEEDED
_FAILED = DataChunkState.FAILED


class Histogram:
    """Observations counted into buckets, Prometheus-style, without a lock."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        """Per bucket (not cumulative); the last one is +Inf."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations ≤ it) per bucket, ending with (inf, count)."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class ProcessorStats:
    """Chunks one processor finished, and how long those that ran took."""

    __slots__ = ("duration", "failed", "succeeded")

    def __init__(self, buckets: Iterable[float]) -> None:
        self.succeeded = 0
        self.failed = 0
        self.duration = Histogram(buckets)
        """Seconds from RUNNING to SUCCEEDED or FAILED."""


class ChunkStats:
    """Counts finished chunks and their run time per processor, from run-map changes."""

    def __init__(self, runs: RunMap, buckets: Iterable[float] = CHUNK_BUCKETS) -> None:
        self._buckets = tuple(buckets)
        self._started: dict[Chunk, float] = {}
        """RUNNING chunks and when they started; a chunk leaves it when it finishes."""
        self.processors: dict[str, ProcessorStats] = {}
        runs.listeners.append(self._on_change)

    def of(self, proc_id: str) -> ProcessorStats:
        stats = self.processors.get(proc_id)
        if stats is None:
            stats = self.processors[proc_id] = ProcessorStats(self._buckets)
        return stats

    def _on_change(self, run: Run, chunk: Chunk | None) -> None:
        # Called three times per chunk on the hot path: kept flat on purpose.
        if chunk is None:
            return
        state = chunk.state
        if state is _WAITING:
            return
        if state is _RUNNING:
            if chunk.progress is None:  # the start itself, not a progress report
                self._started[chunk] = perf_counter()
            return
        started = self._started.pop(chunk, None)
        if started is None and state is _SUCCEEDED:
            return  # a later notice about a finished chunk (a failed delivery)
        stats = self.processors.get(run.proc_id) or self.of(run.proc_id)
        if state is _SUCCEEDED:
            stats.succeeded += 1
        else:
            stats.failed += 1
        if started is not None:  # else it failed before it ran (deleted, shut down)
            elapsed = perf_counter() - started
            hist = stats.duration
            hist.counts[bisect_left(hist.bounds, elapsed)] += 1
            hist.sum += elapsed
