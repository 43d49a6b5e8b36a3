"""Median and spread over repetitions, and percentiles of latency samples."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Repetitions of one measurement: the median, and the lowest and highest value."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def spread(self) -> float:
        """Half the range, relative to the median (±%/100): how much the repetitions agree."""
        if not self.median or self.n < 2:
            return 0.0
        return (self.hi - self.lo) / 2 / abs(self.median)

    def fmt(self, digits: int = 0, scale: float = 1.0) -> str:
        """`median ±spread%` for a table cell."""
        if self.n == 0:
            return "-"
        value = _num(self.median * scale, digits)
        return value if self.n < 2 else f"{value} ±{self.spread * 100:.0f}%"


def _num(value: float, digits: int) -> str:
    if value != value:  # NaN
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def num(value: float, digits: int = 0) -> str:
    return _num(value, digits)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


MIN_WINDOW = 0.5
"""Seconds of work every reported rate must come from. A load that ends in a fraction
of a millisecond measures the clock and the scheduler more than the code, so each
scenario repeats or sizes its loads until the measured window is at least this long,
records the window with the rate, and the report marks any rate whose window was
shorter (or was not recorded)."""
SHORT_MARK = "†"


def short_window(window: Summary | None) -> bool:
    """Whether any repetition's window was under MIN_WINDOW, or none was recorded."""
    return window is None or window.n == 0 or not window.lo >= MIN_WINDOW


def rate_cell(rate: Summary, window: Summary | None, digits: int = 0) -> str:
    """A rate's table cell, marked when it came from too short a window."""
    text = rate.fmt(digits)
    return f"{text} {SHORT_MARK}" if short_window(window) else text
