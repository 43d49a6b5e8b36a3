"""Executor-wide settings, with the defaults a fresh `wiz executor` starts with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .api import WorkModel


@dataclass(frozen=True, slots=True)
class Settings:
    """What an executor is started with; runs may lower some of it per run."""

    max_workers: int = 64
    """Executor-wide cap on chunks processed at once, across all runs."""
    default_run_workers: int = 8
    """A run's worker limit when its `MaxWorkers` is 0."""
    max_pending: int = 100_000
    """Bound on WAITING chunks across all runs; past it AddData answers 429."""
    work_model: WorkModel = WorkModel.POOL
    """Work model of runs that do not choose one. POOL, because `make bench` says so:
    it wins on CPU per chunk, chunk latency and throughput for cheap and expensive
    processors alike, ties on start-up and idle CPU, and loses only on the memory an
    expensive `setup` holds while a run is open (benchmarks/results/latest.md)."""
    chunk_timeout: float | None = None
    """Seconds a chunk may take when its run sets none; None = no limit."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted; larger ones get 413."""
    shutdown_grace: float = 10.0
    """Seconds running chunks get to finish when the executor stops."""
    data_dir: Path = field(default_factory=lambda: Path("wiz-data"))
    """Where processors write; their file access is confined to it."""
    allowed_roots: tuple[Path, ...] = ()
    """Folders outside the data directory that processors may read (e.g. `file://`
    sources of `get` and `git`); writes still go only to the data directory."""
    downstream_attempts: int = 5
    """Tries to deliver one output downstream before it is recorded as failed."""
    downstream_backoff: float = 0.1
    """First delay between delivery tries, doubled after each."""
    retry_after: int = 1
    """Seconds a client is told to wait when the executor is full."""
    strict_config: bool = False
    """Refuse (400) a Configure or AddData body holding a field the executor does not
    know. Off by default: the original Go manager and its example pipelines send such
    fields (`"Processor": {"test": "test"}`), so they are ignored and reported in the
    answer's `Warnings` instead, never dropped silently."""
    db_path: Path | None = None
    """The journal file (`--db`); None is `data_dir/wiz.db`. See `journal_path`."""
    ephemeral: bool = False
    """Keep state in memory only (`--ephemeral`): nothing survives the process. Off by
    default: an AddData answered 200 is in the journal, and survives a crash."""
    fsync: bool = False
    """Sync the journal to disk at each commit (`--fsync`): survives power loss too, at
    the cost of a disk flush per group commit."""
    max_attempts: int = 3
    """Times a chunk may start without ending (the process died each time) before
    recovery fails it instead of running it again: a poison chunk cannot crash-loop."""

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if self.default_run_workers < 1:
            raise ValueError("default_run_workers must be at least 1")
        if self.max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        # Out of range, these would fail every chunk, delivery or request at once.
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.downstream_attempts < 1:
            raise ValueError("downstream_attempts must be at least 1")
        if self.chunk_timeout is not None and not self.chunk_timeout >= 0:
            raise ValueError("chunk_timeout must be None or at least 0")
        if not self.shutdown_grace >= 0 or not self.downstream_backoff >= 0:
            raise ValueError("shutdown_grace and downstream_backoff must be at least 0")
        # Absolute once, here: output Locations are handed to other runs (and other
        # processes), which must not read them against their own working directory.
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())
        object.__setattr__(
            self, "allowed_roots", tuple(Path(root).absolute() for root in self.allowed_roots)
        )
        if self.db_path is not None:
            object.__setattr__(self, "db_path", Path(self.db_path).absolute())

    @property
    def journal_path(self) -> Path:
        """Where the durable journal is: `--db`, or `wiz.db` in the data directory."""
        return self.db_path if self.db_path is not None else self.data_dir / "wiz.db"
