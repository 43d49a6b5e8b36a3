"""Peak RSS by sampling, because the kernel's high-water mark could not be trusted here.

The work-model benchmark used to report `getrusage().ru_maxrss` as the peak, and five
rows of its 2026-11-27 run showed a peak *below* the RSS at rest that the same process
read from /proc moments later: the high-water mark lagged. A per-process cgroup
`memory.peak` would do, but the child is not in a cgroup of its own (and this machine's
cgroups are v1, without `memory.peak`). So the peak is measured: a thread of the parent
process reads the child's RSS every couple of milliseconds (from another process, so it
takes no time from the measured one), and the peak of a window is the highest of those
samples *and* of every reading the child itself reported for the window, so no reported
RSS can be above the reported peak.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from types import TracebackType

import psutil

INTERVAL = 0.002
"""Seconds between samples: short next to every phase measured."""


def peak_of(
    samples: Iterable[tuple[float, int]],
    readings: Iterable[int],
    start: float = float("-inf"),
    end: float = float("inf"),
) -> int:
    """The highest RSS seen from `start` to `end` (time.monotonic() seconds).

    `samples` are (time, RSS) pairs from a sampler; `readings` are RSS values the
    measured process read itself in that window (its RSS at rest, for one), which a
    sampler may have missed between two samples. Including them is what makes a peak
    below a reported reading impossible."""
    in_window = (rss for t, rss in samples if start <= t <= end)
    return max((*in_window, *readings), default=0)


class RssSampler:
    """Samples a process's RSS every `interval` seconds on a thread, while in a `with`.

    `samples` holds (time.monotonic(), RSS bytes) pairs; CLOCK_MONOTONIC is the same
    clock in every process of the machine, so they line up with times the sampled
    process reports. Sampling stops by itself when the process exits."""

    def __init__(self, pid: int, interval: float = INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"rss-{pid}", daemon=True)

    def _sample(self) -> None:
        try:
            proc = psutil.Process(self.pid)
            while True:
                self.samples.append((time.monotonic(), int(proc.memory_info().rss)))
                if self._stop.wait(self.interval):
                    return
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return  # the process has ended

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, readings: Iterable[int] = (), start: float = float("-inf")) -> int:
        """The peak so far (see `peak_of`), from `start` on."""
        return peak_of(list(self.samples), readings, start)
