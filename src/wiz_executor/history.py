"""Each run's recent history, and the rates and times read from it.

"How fast is it going, and when will it be done?" needs more than a run's counts: it
needs the counts a minute ago. The executor samples every run on a timer
(`HistorySampler`, once a second) into a bounded ring per run (`SampleRing`, ten
minutes), kept on the run and freed with it. Nothing is done per chunk: a sample reads
the counts the run map keeps anyway, so the cost is one small write per run per second,
and a finished run is sampled only until its last minute is in the ring.

From the ring come the Run's timing fields (`run_timing`: `Started`, `Ended`,
`DurationSeconds`, `ChunksPerSecond`, `EtaSeconds`) and the history endpoint's samples
(`history_samples`), which draw the dashboard's chart.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .api import DataChunkState
from .runs import Run, RunMap

log = logging.getLogger(__name__)

INTERVAL = 1.0
"""Seconds between two samples of a run."""
LENGTH = 600
"""Samples a run's ring holds: ten minutes at one a second."""
WINDOW = 60.0
"""Seconds `ChunksPerSecond` is measured over."""
SHORTEST = 1.0
"""Below this many seconds of history, a rate is not known yet (null)."""

_FIELDS = 4  # time, finished, waiting, running


class SampleRing:
    """The last `length` samples of one run (time, finished, waiting, running), oldest
    overwritten first. One flat array of floats, not a deque of tuples: 19 KB for ten
    minutes of a run, allocated once, rather than five times that in small objects."""

    __slots__ = ("_data", "_length", "_next", "_size")

    def __init__(self, length: int = LENGTH) -> None:
        if length < 1:
            raise ValueError("a ring holds at least one sample")
        self._length = length
        self._data = array("d", [0.0]) * (length * _FIELDS)
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, time: float, finished: int, waiting: int, running: int) -> None:
        d = self._data
        at = self._next * _FIELDS
        d[at] = time
        d[at + 1] = finished
        d[at + 2] = waiting
        d[at + 3] = running
        following = self._next + 1
        self._next = 0 if following == self._length else following
        if self._size < self._length:
            self._size += 1

    def _at(self, back: int) -> tuple[float, int, int, int]:
        """The sample `back` places before the newest (0: the newest)."""
        at = ((self._next - 1 - back) % self._length) * _FIELDS
        d = self._data
        return d[at], int(d[at + 1]), int(d[at + 2]), int(d[at + 3])

    def samples(self) -> list[tuple[float, int, int, int]]:
        """Every sample held, oldest first."""
        return [self._at(back) for back in range(self._size - 1, -1, -1)]

    def baseline(self, since: float) -> tuple[float, int] | None:
        """(time, finished) of the newest sample taken at or before `since`, else of the
        oldest one held; None when empty. A binary search (samples are in time order):
        a Run's rate costs a few steps, not one per second of its window."""
        if not self._size:
            return None
        d, length, newest = self._data, self._length, self._next - 1
        low, high = 0, self._size - 1  # how far back from the newest
        while low < high:
            middle = (low + high) // 2
            if d[((newest - middle) % length) * _FIELDS] <= since:
                high = middle
            else:
                low = middle + 1
        at = ((newest - low) % length) * _FIELDS
        return d[at], int(d[at + 1])


def finished_count(run: Run) -> int:
    counts = run.counts
    return counts[DataChunkState.SUCCEEDED] + counts[DataChunkState.FAILED]


def processed_count(run: Run) -> int:
    """Its chunks that ran to an end: the finished ones less those a cancel failed
    unrun (`Run.cancelled_chunks`), which are no throughput: counted, a cancel showed
    as a burst of speed. What the rates and the samples' `Finished` count."""
    return finished_count(run) - run.cancelled_chunks


def chunks_per_second(run: Run, now: float, window: float = WINDOW) -> float | None:
    """Chunks processed (succeeded or failed, not failed unrun by a cancel) per second
    over the last `window` seconds:
    measured from the newest sample at least `window` old (or the oldest there is, or
    the run's start, when nothing had finished), to the counts now. None with under
    `SHORTEST` seconds to measure over."""
    ring: SampleRing | None = run.history
    base = ring.baseline(now - window) if ring is not None else None
    if base is None or run.started >= now - window:
        # a run younger than the window: its start (nothing finished yet) is the
        # oldest point there is
        base = (run.started, 0)
    elapsed = now - base[0]
    if elapsed < SHORTEST:
        return None
    return max(0, processed_count(run) - base[1]) / elapsed


def remaining_chunks(run: Run) -> int | None:
    """Chunks left to finish, when the run's size is known: the chunks it holds once end
    of input was declared, else `NumChunks` when nonzero; None otherwise."""
    if run.input_closed:
        target = run.accepted
    elif run.expected:
        target = run.expected
    else:
        return None
    return max(0, target - finished_count(run))


def run_timing(run: Run, now: float) -> dict[str, Any]:
    """The Run's timing fields (`Started`, `Ended`, `DurationSeconds`,
    `ChunksPerSecond`, `EtaSeconds`), each left out while unknown."""
    out: dict[str, Any] = {"Started": rfc3339(run.started)}
    ended = run.ended
    if ended is not None:
        out["Ended"] = rfc3339(ended)
    out["DurationSeconds"] = round(max(0.0, (now if ended is None else ended) - run.started), 3)
    rate = chunks_per_second(run, now)
    if rate is not None:
        out["ChunksPerSecond"] = round(rate, 3)
    remaining = remaining_chunks(run)
    if remaining == 0:
        out["EtaSeconds"] = 0.0
    elif remaining is not None and rate:
        out["EtaSeconds"] = round(remaining / rate, 1)
    return out


def history_samples(run: Run) -> dict[str, Any]:
    """The history endpoint's answer: the run's ring, oldest sample first."""
    ring: SampleRing | None = run.history
    samples = ring.samples() if ring is not None else []
    return {
        "IntervalSeconds": INTERVAL,
        "Samples": [
            {"Time": rfc3339(t), "Finished": finished, "Queued": waiting, "Running": running}
            for t, finished, waiting, running in samples
        ],
    }


def rfc3339(seconds: float) -> str:
    """A `time()` as the wire writes times (UTC, `Z`): the one writer of them all."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class HistorySampler:
    """Samples every run into its ring on a timer: the executor starts `run` as a task
    it owns and cancels it on shutdown. `sample` is the work of one tick (tests call it
    with the time they choose)."""

    def __init__(
        self, runs: RunMap, clock: Callable[[], float], interval: float = INTERVAL
    ) -> None:
        self.runs = runs
        self.clock = clock
        self.interval = interval

    def sample(self, now: float) -> None:
        """Add a sample to every run that is not finished, or finished within the last
        `WINDOW` (so that its ring holds its last minute; after that nothing changes)."""
        waiting, running = DataChunkState.WAITING, DataChunkState.RUNNING
        succeeded, failed = DataChunkState.SUCCEEDED, DataChunkState.FAILED
        quiet = now - WINDOW - self.interval
        for run in self.runs:
            ended = run.ended
            if ended is not None and ended < quiet:
                continue
            ring = run.history
            if ring is None:
                ring = run.history = SampleRing()
            counts = run.counts
            processed = counts[succeeded] + counts[failed] - run.cancelled_chunks
            ring.add(now, processed, counts[waiting], counts[running])

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sample(self.clock())
            except Exception:  # a bad tick must not end the sampling
                log.exception("sampling the runs' history failed")
