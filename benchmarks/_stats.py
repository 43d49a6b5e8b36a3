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
