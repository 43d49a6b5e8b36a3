"""Metrics beyond the executor's chunk and HTTP counts: the journal and each run.

Both are read when scraped, like the rest (`_metrics.ExecutorCollector`): nothing is
counted on the chunk path for them. The journal's writer times its own commits (one
histogram observation per group commit, on its thread); the per-run series are read
from the runs the executor holds, so a run that is deleted or purged
(`--keep-finished`) leaves the scrape with it and the number of series stays bounded
by the runs kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..api import DataChunkState
from ..journal import SqliteStore

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from ..executor import Executor

INF = float("inf")
_FINISHED = (DataChunkState.SUCCEEDED, DataChunkState.FAILED)


class JournalCollector(Collector):
    """The durable journal's commits, rows written, commit latency and size on disk (no
    series with `--ephemeral`, which has no journal)."""

    def __init__(self, executor: Callable[[], Executor | None]) -> None:
        self._executor = executor

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        ex = self._executor()
        store = ex.journal if ex is not None else None
        if not isinstance(store, SqliteStore):
            return
        yield CounterMetricFamily(
            "wiz_journal_commits",
            "Transactions the journal's writer committed (each holds every record queued "
            "since the last: group commit).",
            value=store.commits,
        )
        yield CounterMetricFamily(
            "wiz_journal_rows_written",
            "Rows the journal's writer inserted, updated or deleted (a chunk accepted, "
            "started, finished; a run configured, finished, deleted or purged).",
            value=store.rows_written,
        )
        duration = HistogramMetricFamily(
            "wiz_journal_commit_duration_seconds",
            "Seconds a group commit took, from BEGIN to the end of COMMIT (with --fsync, "
            "the disk flush included).",
        )
        hist = store.commit_seconds
        duration.add_metric(
            [],
            buckets=[("+Inf" if b == INF else repr(b), n) for b, n in hist.cumulative()],
            sum_value=hist.sum,
        )
        yield duration
        yield GaugeMetricFamily(
            "wiz_journal_size_bytes",
            "Bytes of the journal on disk: its file and its write-ahead log.",
            value=store.disk_bytes(),
        )


class RunCollector(Collector):
    """Finished chunks per run, for per-run throughput (`rate(...[1m])`)."""

    def __init__(self, executor: Callable[[], Executor | None]) -> None:
        self._executor = executor

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        ex = self._executor()
        finished = CounterMetricFamily(
            "wiz_run_chunks_finished",
            "Chunks of a run that ended, by state: per-run throughput. A series lives as "
            "long as its run is kept (gone once deleted or purged). A retry takes the "
            "run's FAILED chunks back, which Prometheus reads as a counter reset.",
            labels=["processor", "run", "state"],
        )
        for run in ex.runs if ex is not None else ():
            counts = run.counts
            for state in _FINISHED:
                finished.add_metric([run.proc_id, run.run_id, state.value], counts[state])
        yield finished
