"""What the executor counts about the chunks it runs, for the metrics endpoint.

Current state (chunks by state, runs, busy workers, queue depth) is read from the run
map and the limiter when metrics are scraped, so it costs nothing in between. What
cannot be read back later is counted as it happens, without a listener per state
change: the run map counts finished chunks in the transition itself
(`RunMap.finished_totals`), and the chunk runner times each chunk it runs into the
histograms here.

Everything runs on the event loop's thread, like the run map, so plain integers and
lists are enough: no lock, and no `prometheus_client` object on the hot path (its
metric objects take a lock per update). The server turns these numbers into the
Prometheus text format.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["CHUNK_BUCKETS", "COMMIT_BUCKETS", "ChunkStats", "Histogram"]

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

COMMIT_BUCKETS = tuple(b for b in CHUNK_BUCKETS if b <= 5.0)
"""Upper bounds (seconds) of the journal's commit-duration buckets: a group commit in
the operating system's cache takes tens of microseconds to milliseconds, one with
`--fsync` a disk flush (milliseconds on an SSD, more on a busy or network disk)."""


class Histogram:
    """Observations counted into buckets, Prometheus-style, without a lock.

    One thread observes (the event loop, or the journal's writer for its commits); a
    scrape on another thread may see the sum one observation apart from the counts,
    which the next scrape corrects: no lock is worth that."""

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


class ChunkStats:
    """How long the chunks of each processor ran, timed by the chunk runner."""

    def __init__(self, buckets: Iterable[float] = CHUNK_BUCKETS) -> None:
        self._buckets = tuple(buckets)
        self.durations: dict[str, Histogram] = {}
        """Per processor: seconds from RUNNING to SUCCEEDED or FAILED."""
        self.per_node: dict[tuple[str, str], int] = {}
        """Chunks run per Ray node (ID, address), counted by the RAY model."""

    def duration(self, proc_id: str) -> Histogram:
        hist = self.durations.get(proc_id)
        if hist is None:
            hist = self.durations[proc_id] = Histogram(self._buckets)
        return hist
