"""The runs' lifecycle in the log: configured, started, finished, deleted, and every
chunk that failed, each line naming the run (`noop/r1`) and the chunk.

Hooked onto the run map's transitions that happen once per run, and onto chunk
failures, which are rare; a chunk's success is not logged, so the hot path gains
nothing. Failures the executor causes itself come as one line, not one per chunk: a
deleted run's unfinished chunks are counted in its `deleted` line, and those failed by
a shutdown in the executor's `stopped` line (a queue of 100,000 waiting chunks would
otherwise be 100,000 warnings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import monotonic

from ._logs import about
from .runs import CANCELLED, FAILED, RUNNING, SUCCEEDED, WAITING, Chunk, Run, RunMap

log = logging.getLogger("wiz_executor.runs")


class RunLog:
    """Writes the lifecycle lines of the runs of one run map."""

    def __init__(self, runs: RunMap, closing: Callable[[], bool]) -> None:
        self._closing = closing
        self.failed_by_shutdown = 0
        """Chunks failed while the executor stopped, for its `stopped` line."""
        self._since: dict[Run, float] = {}
        """When each unfinished run was configured, then when it started."""
        runs.on_run_started.append(self.started)
        runs.on_run_finished.append(self.finished)
        runs.on_run_removed.append(self.removed)
        runs.on_chunk_failed.append(self.chunk_failed)

    def configured(self, run: Run) -> None:
        self._since[run] = monotonic()
        ec = run.configuration.ExecutorConfig
        locations = (ec.DownstreamLocations or []) if ec.SendDownstream else []
        downstream = ", ".join(f"{d.Hostname} {d.ProcID}/{d.RunID}" for d in locations)
        log.info(
            "run %s/%s configured: NumChunks %s, MaxWorkers %d, work model %s%s",
            run.proc_id,
            run.run_id,
            run.expected or "not known",
            run.max_workers,
            run.work_model.value,
            f", downstream to {downstream}" if downstream else "",
            extra=about(run.proc_id, run.run_id),
        )

    def started(self, run: Run) -> None:
        self._since[run] = monotonic()
        log.info(
            "run %s/%s started: its first chunks arrived",
            run.proc_id,
            run.run_id,
            extra=about(run.proc_id, run.run_id),
        )

    def finished(self, run: Run) -> None:
        since = self._since.pop(run, None)
        took = f" in {monotonic() - since:.3f} s" if since is not None else ""
        counts = run.counts
        undelivered = (
            f", {run.deliveries_failed} not delivered downstream" if run.deliveries_failed else ""
        )
        log.info(
            "run %s/%s finished %s (%d chunks, %d failed%s)%s",
            run.proc_id,
            run.run_id,
            run.state.value,
            counts[SUCCEEDED] + counts[FAILED],
            counts[FAILED],
            undelivered,
            took,
            extra=about(run.proc_id, run.run_id),
        )

    def removed(self, run: Run) -> None:
        self._since.pop(run, None)
        unfinished = run.counts[WAITING] + run.counts[RUNNING]
        log.info(
            "run %s/%s deleted (it was %s; %d unfinished chunks cancelled)",
            run.proc_id,
            run.run_id,
            run.state.value,
            unfinished,
            extra=about(run.proc_id, run.run_id),
        )

    def chunk_failed(self, run: Run, chunk: Chunk) -> None:
        if run.removed:  # counted in the run's `deleted` line
            return
        if chunk.error is CANCELLED:  # counted in the run's `cancelled` line
            return
        if self._closing():
            self.failed_by_shutdown += 1
            return
        log.warning(
            "chunk %s of run %s/%s failed: %s",
            chunk.id,
            run.proc_id,
            run.run_id,
            chunk.error,
            extra=about(run.proc_id, run.run_id, chunk.id),
        )
