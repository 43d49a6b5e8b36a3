"""A run's live progress, from a mix of Run snapshots and events, and its rendering.

`follow()` yields full `Run` snapshots (exact, but only now and then) and events (each
a change since the subscription). A tracker keeps the latest snapshot and the chunk
states learned since; the counts it shows never go backwards and equal the snapshot's
when the run ends, since the last item of `follow()` is the final Run.

Throughput and ETA are the executor's (`ChunksPerSecond`, `EtaSeconds`, extension
fields of the Run): a tracker keeps those of its latest snapshot. An executor without
them (an older one, or the Go original) shows an en dash.

A tracker is changed by the thread that follows the run and drawn by rich's `Live`
refresh thread, so a lock keeps a draw from seeing it half-changed.
"""

from __future__ import annotations

import threading

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..api import DataChunkState, Run, State
from ..client import ChunkEvent, Event, RunEvent

_STYLE = {
    State.SUCCEEDED: "green",
    State.ERRORED: "red",
    State.RUNNING: "yellow",
    State.CONFIGURED: "cyan",
}


class RunTracker:
    def __init__(self, proc_id: str, run_id: str, expected: int = 0) -> None:
        self.proc_id = proc_id
        self.run_id = run_id
        self.expected = expected
        self.state: State | None = None
        self.input_closed = False
        self.snapshot = dict.fromkeys(DataChunkState, 0)
        self.chunks: dict[str, DataChunkState] = {}
        self.errors: dict[str, str] = {}
        self.rate: float | None = None
        """Chunks finished per second over the last minute, by the executor."""
        self.eta: float | None = None
        """Seconds until the run should finish, by the executor."""
        self.problem: str | None = None
        """Why the run cannot be followed (unreachable, not found): shown instead."""
        self._lock = threading.Lock()

    def update(self, item: Run | Event) -> None:
        with self._lock:
            self._update(item)

    def _update(self, item: Run | Event) -> None:
        if isinstance(item, Run | RunEvent):
            self.state = item.CurrentState
            self.input_closed = bool(item.InputClosed)
            if item.ChunkCounts is not None:
                self.snapshot = {s: getattr(item.ChunkCounts, s.value) for s in DataChunkState}
                self.chunks.clear()
            if isinstance(item, Run):
                self.expected = item.Configuration.ExpectedData.NumChunks
                self.rate, self.eta = item.ChunksPerSecond, item.EtaSeconds
        elif isinstance(item, ChunkEvent):
            self.chunks[item.ChunkID] = item.State
            if item.Error:
                self.errors[item.ChunkID] = item.Error

    @property
    def counts(self) -> dict[DataChunkState, int]:
        seen = dict.fromkeys(DataChunkState, 0)
        with self._lock:
            for state in self.chunks.values():
                seen[state] += 1
            snap = self.snapshot
            chunks = len(self.chunks)
        total = max(sum(snap.values()), chunks)
        succeeded = max(snap[DataChunkState.SUCCEEDED], seen[DataChunkState.SUCCEEDED])
        failed = max(snap[DataChunkState.FAILED], seen[DataChunkState.FAILED])
        running = seen[DataChunkState.RUNNING] if chunks else snap[DataChunkState.RUNNING]
        running = min(running, total - succeeded - failed)
        return {
            DataChunkState.WAITING: total - succeeded - failed - running,
            DataChunkState.RUNNING: running,
            DataChunkState.SUCCEEDED: succeeded,
            DataChunkState.FAILED: failed,
        }

    @property
    def total(self) -> int | None:
        """Chunks the run will hold, when known (NumChunks, or all held once input closed)."""
        held = sum(self.counts.values())
        if self.input_closed:
            return held
        return self.expected or None

    def last_errors(self, n: int) -> list[tuple[str, str]]:
        """The errors of the last `n` chunks that failed, oldest first."""
        with self._lock:
            return list(self.errors.items())[-n:]

    @property
    def finished(self) -> bool:
        return self.state in (State.SUCCEEDED, State.ERRORED)

    def rates(self, run: Run) -> None:
        """Take only the throughput and ETA of a snapshot read between events (its
        counts and state may be older than the events already seen)."""
        with self._lock:
            if not self.finished:
                self.rate, self.eta = run.ChunksPerSecond, run.EtaSeconds

    def fail(self, problem: str) -> None:
        """The run cannot be followed: say why instead of its progress."""
        with self._lock:
            self.problem = problem


NOT_KNOWN = "\u2013"  # an en dash
"""What a cell shows when the executor did not say (an older executor, the Go original)."""


def rate_text(rate: float | None) -> str:
    """Chunks per second, with three significant figures at most: `1.23/s`, `456/s`."""
    if rate is None:
        return NOT_KNOWN
    if rate >= 100:
        return f"{rate:.0f}/s"
    return f"{rate:.3g}/s"


def duration_text(seconds: float | None) -> str:
    """A duration the way people read one: `45s`, `3m 05s`, `2h 01m`, `3d 4h`."""
    if seconds is None or seconds < 0:
        return NOT_KNOWN
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def eta_text(eta: float | None, state: State | None) -> str:
    """The executor's ETA while the run is unfinished; `NOT_KNOWN` once it has ended."""
    return NOT_KNOWN if state in (State.SUCCEEDED, State.ERRORED) else duration_text(eta)


def state_text(state: State | None) -> Text:
    name = state.value if state is not None else "…"
    return Text(name, style=_STYLE.get(state, "") if state is not None else "dim")


def bar(tracker: RunTracker, width: int = 30) -> RenderableType:
    counts = tracker.counts
    done = counts[DataChunkState.SUCCEEDED] + counts[DataChunkState.FAILED]
    total = tracker.total
    if tracker.finished:
        total = max(total or 0, done) or 1
        done = total
    return ProgressBar(total=float(total) if total else None, completed=done, width=width)


def counts_text(tracker: RunTracker) -> str:
    """`done/total`, then only the counts that are not zero."""
    c = tracker.counts
    done = c[DataChunkState.SUCCEEDED] + c[DataChunkState.FAILED]
    total = tracker.total
    parts = [f"{done}/{total if total is not None else '?'}"]
    for state in (DataChunkState.WAITING, DataChunkState.RUNNING, DataChunkState.FAILED):
        if c[state]:
            parts.append(f"{c[state]} {state.value.lower()}")
    return "  ".join(parts)


def speed_text(tracker: RunTracker) -> str:
    """`12.5/s  ETA 1m 04s`, with `NOT_KNOWN` for what the executor did not say."""
    return f"{rate_text(tracker.rate)}  ETA {eta_text(tracker.eta, tracker.state)}"


def render_run(tracker: RunTracker, max_errors: int = 5) -> RenderableType:
    """One run: a bar, its state and counts, and the last few chunk errors."""
    table = Table.grid(padding=(0, 1))
    table.add_row(
        Text(f"{tracker.proc_id}/{tracker.run_id}", style="bold"),
        bar(tracker),
        state_text(tracker.state),
        counts_text(tracker),
        speed_text(tracker),
    )
    errors_seen = tracker.last_errors(max_errors)
    if not errors_seen:
        return table
    errors = Table(title="failed chunks", title_justify="left", show_edge=False)
    errors.add_column("chunk")
    errors.add_column("error")
    for chunk_id, error in errors_seen:
        errors.add_row(chunk_id, Text(error, style="red"))
    return Group(table, errors)
