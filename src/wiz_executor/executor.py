"""The executor: the run map, the processors and the work models, behind one API.

The HTTP server is a thin translation onto this class, and tests and benchmarks can
drive it directly. It is an async context manager: entering starts what it owns (the
journal, the worker threads, the downstream sender), leaving shuts down in a fixed order.

The journal (`journal.JournalStore`, durable by default) is opened first, and recovery
runs as a task of the executor's: it reads the journal in one pass, rebuilds the run map,
requeues the chunks that had not ended (at-least-once) and resends pending deliveries.
Until it is done `recovering` is true and writes are refused with `Recovering` (503).

With `keep_finished` (`--keep-finished`, 7 days by default) a task of the executor's
removes the runs that finished longer ago than that, with their journal rows and files,
once recovery is done and then every min(keep/10, 60) s: finished work does not fill the
journal and the data directory for ever.

With a durable journal, RAM holds what is active: once a run has finished (its
deliveries done) and the journal has committed all of it, its chunks are let go
(`Run.stored`) and read from the journal when asked (`chunks_of`, `input_chunk`,
`output_chunk`, a resend's check, `retry`); the run's header stays in the run map.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from enum import Enum
from functools import partial
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel

from . import netpolicy
from ._logs import about
from ._recovery import recover
from ._runlog import RunLog
from ._tls import client_context
from .api import Configuration, Data, DataChunkState, ExecutorConfig, RunChange
from .api import Processor as ProcessorInfo
from .downstream import Downstream, location_url
from .errors import (
    ChunkNotFound,
    Conflict,
    ExecutorFull,
    InvalidConfiguration,
    InvalidInput,
    JournalError,
    NetworkRefused,
    PayloadTooLarge,
    Recovering,
    RunNotFound,
    ShuttingDown,
    WizError,
)
from .events import EventHub
from .history import HistorySampler
from .journal import JournalStore, MemoryStore, SqliteStore
from .netpolicy import NetworkPolicy, guarded_client
from .processors._base import folder_name
from .registry import Registry
from .runs import FAILED, RUNNING, WAITING, Chunk, Run, RunMap, from_stored, same_json
from .scheduling import ProcessorThreads, Scheduler
from .settings import Settings
from .wire import chunk_from_data

log = logging.getLogger(__name__)

FULL_MESSAGE = (
    "the executor holds {waiting} waiting chunks and takes at most {max_pending}; retry later"
)
"""The words of the 429 a full executor answers AddData with (`Executor.full`)."""


class AddResult:
    __slots__ = ("accepted", "committed", "duplicates")

    def __init__(
        self, accepted: int, duplicates: int, committed: asyncio.Future[None] | None = None
    ) -> None:
        self.accepted = accepted
        self.duplicates = duplicates
        self.committed = committed
        """Resolved once the accepted chunks are durable in the journal (None when there
        is nothing to wait for): await it (`Executor.committed`) before answering 200."""

    def __repr__(self) -> str:
        return f"<AddResult accepted={self.accepted} duplicates={self.duplicates}>"


class Executor:
    """Hosts processors and runs them on the chunks it is given."""

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None) -> None:
        self.settings = settings or Settings()
        self.registry = registry if registry is not None else Registry.default()
        self.runs = RunMap()
        self.threads = ProcessorThreads(self.settings.max_workers)
        """Where blocking `run` calls run; a thread stuck in a timed-out call is replaced."""
        self.scheduler = Scheduler(self.runs, self.settings, self.threads)
        self.limits = self.scheduler.runner.limits
        """The operator's ceilings every run's configuration is held to."""
        self.run_log = RunLog(self.runs, lambda: self.closing)
        """The runs' lifecycle lines (configured, started, finished, failed chunks)."""
        self.events = EventHub(self.runs)
        """Run and chunk state changes as event streams (costs nothing unsubscribed)."""
        self.stats = self.scheduler.runner.stats
        """Finished chunks and their durations, per processor, for the metrics."""
        self.network = NetworkPolicy(self.settings.allow_net, self.settings.deny_net)
        """What processors may connect to: `--allow-net`, `--deny-net`, and this
        executor's own address (learnt at start-up, see `listening_on`)."""
        self.downstream_network = self.network.for_downstream()
        """What deliveries may connect to: the same flags, loopback allowed by default."""
        self.scheduler.runner.network = self.network
        self._http: httpx.AsyncClient | None = None
        self.downstream: Downstream | None = None
        self.journal: JournalStore | None = None
        """The run map's change log: opened on entry, closed last on shutdown."""
        self.recovering = False
        """True while recovery rebuilds the run map from the journal."""
        self.recovery_error: JournalError | None = None
        self.recovery: dict[str, int] = {}
        """What recovery found: runs, chunks requeued, failed as poison, deliveries."""
        self._recovery: asyncio.Task[None] | None = None
        self._refusal: WizError | None = None
        """Why writes are refused (recovering, or a journal that failed), else None:
        one attribute to test on the AddData path."""
        self._keeper: asyncio.Task[None] | None = None
        self._storing: set[asyncio.Task[None]] = set()
        """Tasks letting finished runs' chunks go once committed (`_store_finished`)."""
        self.runs.on_run_finished.append(self._run_finished)
        self.clock: Callable[[], float] = time.time
        """The wall clock `purge_finished` measures run ages with (the journal's finish
        times are `time.time()`); a test may set another before entering."""
        self.history = HistorySampler(self.runs, lambda: self.clock())
        """Samples every run's counts once a second into its ring (`history`): the
        Run's rates and ETA, and the history endpoint, are read from them."""
        self._sampler: asyncio.Task[None] | None = None
        self.closing = False
        self._started = False
        self.recovery_started = 0.0
        self.closing_since = 0.0
        """When (`time.time()`) recovery began and the shutdown began: the `Since` of the
        `Waiting` reasons RECOVERING and STOPPING."""

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Executor:
        if self._started:
            raise RuntimeError("an Executor can be started only once")
        self._started = True
        settings = self.settings
        # One trust for everything the executor connects to: downstream executors here,
        # and `get`/`scrape` sources through the chunk runner's contexts. Made first: a
        # bad CA bundle (TLSError) must stop the start before the journal is taken.
        tls = client_context(settings.ssl_ca_certs)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store: JournalStore = (
            MemoryStore()
            if settings.ephemeral
            else SqliteStore(settings.journal_path, fsync=settings.fsync)
        )
        fresh = settings.ephemeral or not settings.journal_path.exists()
        await asyncio.to_thread(store.open)  # JournalError: the caller says what to do
        self.journal = store
        self.runs.attach(store)
        try:
            if settings.listen is not None:
                await self.listening_on([settings.listen])
        except BaseException:
            await store.close()  # the journal's lock is not kept by a start that failed
            raise
        self.scheduler.runner.tls = tls
        self._http = guarded_client(
            self.downstream_network, verify=tls, timeout=httpx.Timeout(30.0, connect=5.0)
        )
        self.downstream = Downstream(
            self.runs,
            self._http,
            attempts=settings.downstream_attempts,
            backoff=settings.downstream_backoff,
            cap=settings.delivery_backoff_cap,
            timeout=settings.delivery_timeout,
            token=self.settings.token,
            tokens=self.settings.downstream_tokens,
        )
        self.scheduler.runner.on_output = self.downstream.deliver
        if not fresh:  # (a journal this start creates holds nothing to recover)
            self.recovering = True
            self.recovery_started = time.time()
            self._refusal = Recovering()
            self._recovery = asyncio.create_task(recover(self, store), name="wiz-recovery")
        self._sampler = asyncio.create_task(self.history.run(), name="wiz-history")
        if settings.keep_finished is not None:
            self._keeper = asyncio.create_task(
                self._keep_finished(settings.keep_finished), name="wiz-keep-finished"
            )
        return self

    async def _keep_finished(self, keep: float) -> None:
        """Purge the runs finished more than `keep` seconds ago: once recovery is done,
        then every min(keep/10, 60) s, until the shutdown cancels it. A purge that
        fails is logged and tried again next time: it must not end the task."""
        period = min(keep / 10, 60.0)
        await self.recovered()
        while True:
            try:
                await self.purge_finished()
            except Exception:
                log.exception("removing the runs finished over %g s ago failed", keep)
            await asyncio.sleep(period)

    @property
    def refusal(self) -> WizError | None:
        """Why writes are refused now (recovering, or a journal that failed), else None;
        the early AddData answers (`server._early`) and the `Waiting` reasons read it."""
        return self._refusal

    async def recovered(self) -> None:
        """Wait until recovery is done (at once when there was no journal to recover:
        an ephemeral executor, or the first start on a data dir). Writes get
        `Recovering` until then."""
        if self._recovery is not None:
            await asyncio.shield(self._recovery)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, let running chunks finish within the grace period, fail the
        rest with a clear message, deliver what can be, then close."""
        if self.closing:
            return
        self.closing = True
        self.closing_since = time.time()
        if self._recovery is not None and not self._recovery.done():
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        for task in (self._keeper, self._sampler):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for task in list(self._storing):
            task.cancel()
        await asyncio.gather(*self._storing, return_exceptions=True)
        grace = self.settings.shutdown_grace if grace is None else grace
        counts = self.runs.counts
        log.info(
            "executor stopping: %d runs, %d chunks running, %d waiting; %g s of grace",
            len(self.runs),
            counts[RUNNING],
            counts[WAITING],
            grace,
        )
        await self.scheduler.shutdown(grace)
        if self.downstream is not None:
            await self.downstream.close(grace)
            await self.scheduler.drain()  # runs that completed on their last delivery
        if self._http is not None:
            await self._http.aclose()
        self.threads.close()
        self.events.close()  # after the chunks' last changes, so streams can end with them
        if self.journal is not None:
            await self.journal.close()  # last: every change above is journalled
        failed = self.run_log.failed_by_shutdown
        kept = self.runs.counts[WAITING] if self.runs.durable else 0
        log.info(
            "executor stopped%s%s",
            f" ({failed} unfinished chunks failed by the shutdown)" if failed else "",
            f" ({kept} unfinished chunks kept in the journal, to run after the restart)"
            if kept
            else "",
        )

    async def listening_on(self, endpoints: Sequence[tuple[str, int]]) -> None:
        """Tell the network policy where this executor serves (host, port): processors
        may not fetch from there. A host name is resolved (without blocking the loop);
        the server calls this again with the sockets it bound, so port 0 is known."""
        own: list[tuple[str, int]] = []
        for host, port in endpoints:
            try:
                addresses = await netpolicy.resolve(host, port)
            except OSError:
                log.warning("cannot resolve the listening address %s", host)
                continue
            own += [(str(address), port) for address in addresses]
        self.network.listening_on(own)

    async def check_downstream(
        self, proc_id: str, run_id: str, configuration: Configuration
    ) -> None:
        """Refuse (400) a new run whose downstream locations the network policy refuses,
        at Configure rather than on every delivery. Each Hostname is resolved now, without
        blocking the loop; a name that does not resolve (yet) is left to the deliveries, which check
        every connection anyway. A run already held is left to `configure` (same
        configuration: a no-op; another: a 409)."""
        self.registry.get(proc_id)  # an unknown processor stays a 404
        ec = configuration.ExecutorConfig
        if not ec.SendDownstream or not ec.DownstreamLocations:
            return
        if self.runs.find(proc_id, run_id) is not None:
            return
        for i, loc in enumerate(ec.DownstreamLocations):
            try:
                url = httpx.URL(location_url(loc))
            except (httpx.InvalidURL, ValueError):
                continue  # not a URL: the delivery says so
            if url.scheme not in ("http", "https") or not url.host:
                continue
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                async with asyncio.timeout(5):
                    await self.downstream_network.resolve_checked(url.host, port)
            except NetworkRefused as exc:
                raise InvalidInput(
                    f"ExecutorConfig.DownstreamLocations[{i}].Hostname {loc.Hostname!r} is "
                    f"refused by the network policy: {exc.message}"
                ) from None
            except (OSError, TimeoutError):
                continue

    # -- processors --------------------------------------------------------------------

    def processors(self) -> list[ProcessorInfo]:
        return [cls.info() for cls in self.registry]

    def processor(self, proc_id: str) -> ProcessorInfo:
        return self.registry.get(proc_id).info()

    # -- runs --------------------------------------------------------------------------

    def list_runs(self, proc_id: str) -> list[Run]:
        self.registry.get(proc_id)
        return self.runs.runs_of(proc_id)

    def get_run(self, proc_id: str, run_id: str) -> Run:
        self.registry.get(proc_id)
        return self.runs.get(proc_id, run_id)

    def configure(
        self,
        proc_id: str,
        run_id: str,
        configuration: Configuration,
        unknown: Sequence[str] = (),
    ) -> tuple[Run, bool]:
        """Create a run; the same configuration again is a no-op, a different one a 409.

        `unknown` names the fields of the request's wire objects that the models ignored
        (`api.unknown_fields`), as dotted paths: with `strict_config` they are a 400,
        otherwise they join the run's `Warnings`, as do unknown fields of the processor's
        configuration and a `MaxWorkers` above `max_workers`, which is clamped to it.
        Returns the run and whether it was created by this call.
        """
        if self._refusal is not None:
            raise self._refusal
        cls = self.registry.get(proc_id)
        if not run_id:
            raise InvalidInput("a run needs a non-empty run ID")
        strict = self.settings.strict_config
        if unknown and strict:
            raise InvalidInput(
                "unknown field(s) in the configuration (refused under --strict-config): "
                + ", ".join(unknown)
            )
        existing = self.runs.find(proc_id, run_id)
        if existing is not None:
            # As JSON, not with `==`: `true` and `1` are different configurations.
            # Against the configuration it was created with: a run changed live since
            # (`change_run`) still takes the original Configure again as a no-op.
            if not same_json(existing.requested.model_dump(), configuration.model_dump()):
                raise Conflict(
                    f"run {run_id!r} of processor {proc_id!r} is already configured "
                    "differently; delete it first to configure it again"
                )
            return existing, False
        if self.closing:
            raise ShuttingDown()
        processor_config, unknown_in_processor = cls.check_config(
            configuration.Processor, allow_unknown=not strict
        )
        processor_config = cls.apply_limits(processor_config, self.limits)
        self.check_chunk_timeout(configuration)
        warnings = [f"unknown field {path} ignored" for path in unknown]
        warnings += [f"unknown field Processor.{path} ignored" for path in unknown_in_processor]
        run = self._new_run(proc_id, run_id, configuration, processor_config, warnings)
        if warnings:
            log.warning(
                "run %s/%s configured: %s",
                proc_id,
                run_id,
                "; ".join(warnings),
                extra=about(proc_id, run_id),
            )
        self.runs.insert(run)
        self.run_log.configured(run)
        self.scheduler.open(run, cls)
        return run, True

    def check_chunk_timeout(self, configuration: Configuration) -> None:
        """A run may ask for a shorter ChunkTimeout than `--max-chunk-timeout`, never a
        longer one."""
        timeout = configuration.ExecutorConfig.ChunkTimeout
        ceiling = self.settings.max_chunk_timeout
        if timeout and ceiling is not None and timeout > ceiling:
            raise InvalidConfiguration(
                f"ExecutorConfig.ChunkTimeout {timeout:g} is above the executor's "
                f"--max-chunk-timeout ({ceiling:g})"
            )

    def _new_run(
        self,
        proc_id: str,
        run_id: str,
        configuration: Configuration,
        processor_config: BaseModel,
        warnings: list[str],
    ) -> Run:
        ec = configuration.ExecutorConfig
        # SendDownstream with no locations (the original manager's leaves) sends nothing.
        max_workers = self._run_workers(ec.MaxWorkers, warnings)
        return Run(
            proc_id,
            run_id,
            configuration,
            processor_config,
            max_workers=max_workers,
            work_model=ec.WorkModel or self.settings.work_model,
            timeout=ec.ChunkTimeout or None,
            warnings=warnings,
        )

    def _run_workers(self, asked: int, warnings: list[str] | None = None) -> int:
        """A run's worker limit for `MaxWorkers` `asked` (0 = `default_run_workers`),
        clamped to the executor-wide limit, with a warning when it is."""
        limit = self.settings.max_workers
        if asked > limit and warnings is not None:
            warnings.append(
                f"MaxWorkers {asked} is more than this executor runs at once "
                f"(--max-workers {limit}); the run gets {limit}"
            )
        return min(asked or self.settings.default_run_workers, limit)

    async def committed(self, future: asyncio.Future[None] | None) -> None:
        """Wait until a journal append is durable (a no-op for None).

        A commit that fails leaves the executor refusing writes (503): the chunks it held
        are in the run map but not in the journal, so answering more writes 200 would
        promise what a restart cannot keep."""
        if future is None:
            return
        try:
            # Shielded: a client that hangs up must not cancel what the chunks wait on.
            await asyncio.shield(future)
        except JournalError as exc:
            if not isinstance(self._refusal, JournalError):
                log.critical("journal commit failed; refusing writes from now on: %s", exc)
                self._refusal = exc
            raise

    async def commit(self) -> None:
        """Wait until every change so far is durable (Configure, end-of-input, delete)."""
        await self.committed(self.runs.flush())

    def check_batch_size(self, items: int) -> None:
        """Refuse a batch of more items than the executor ever holds waiting.

        Counted before the items are decoded (duplicates included), so a batch that
        could never fit costs no more than its body: a 413, since retrying cannot help
        (a 429 would have a retrying client resend it for ever).
        """
        limit = self.settings.max_pending
        if items > limit:
            raise PayloadTooLarge(
                limit,
                f"the batch holds {items} chunks, more than the executor ever holds "
                f"waiting ({limit}, --max-pending); send it in smaller batches",
            )

    def full(self) -> ExecutorFull:
        """The 429 of a batch that does not fit under `max_pending`: one answer, whether
        `add_chunks` or the early refusal (`server._early`) gives it."""
        return ExecutorFull(
            FULL_MESSAGE.format(
                waiting=self.runs.counts[WAITING], max_pending=self.settings.max_pending
            ),
            self.settings.retry_after,
        )

    def add_chunks(
        self,
        proc_id: str,
        run_id: str,
        chunks: list[Chunk],
        repeats: int = 0,
        stored: dict[str, Chunk] | None = None,
    ) -> AddResult:
        """Accept input chunks as a whole or not at all: a conflict, a closed run or a
        full queue rejects the whole batch and changes nothing.

        `repeats` counts items of the request already dropped as repeats of one of
        `chunks` (see `wire.decode_distinct`); they are answered as duplicates.
        A stored run's (`Run.stored`) chunks with these IDs are `stored`, read first
        with `held_chunks`; without them a stored run holds none (a resend is a 409).
        """
        if self._refusal is not None:
            raise self._refusal
        if len(chunks) + repeats > self.settings.max_pending:
            self.check_batch_size(len(chunks) + repeats)
        # The run map first (one lookup on the hot path); a recovered run may belong to a
        # processor no longer registered, and that is a 404 as for GetRun.
        run = self.runs.find(proc_id, run_id)
        if run is None or proc_id not in self.registry:
            run = self.get_run(proc_id, run_id)
        held = (stored or {}) if run.stored else None
        new, duplicates = self.runs.check_accepts(run, chunks, held)
        duplicates += repeats
        if new:
            if self.closing:
                raise ShuttingDown()
            if self.runs.counts[WAITING] + len(new) > self.settings.max_pending:
                raise self.full()
            committed = self.runs.accept(run, new)
            if committed is None:
                self.scheduler.submit(run, new)
            else:
                # They run once journalled, not before: a chunk that kills the process at
                # once must be in the journal to be counted, or a client resending it
                # would crash-loop the executor without --max-attempts ever catching it.
                committed.add_done_callback(partial(self._submit_committed, run, new))
            return AddResult(len(new), duplicates, committed)
        # Only resends: their first acceptance may not be durable yet.
        return AddResult(0, duplicates, self.runs.flush())

    def _submit_committed(self, run: Run, new: list[Chunk], future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None or run.removed:
            return  # (a failed commit: the executor refuses writes, see `committed`)
        # A cancel before the commit failed some (or all) of them: those never run.
        waiting = [chunk for chunk in new if chunk.state is WAITING]
        if waiting:
            self.scheduler.submit(run, waiting)

    def add_data(self, proc_id: str, run_id: str, data: Data | list[Data]) -> AddResult:
        """`add_chunks` for wire models (the library's convenient form)."""
        items = data if isinstance(data, list) else [data]
        return self.add_chunks(proc_id, run_id, [chunk_from_data(d) for d in items])

    def end_of_input(self, proc_id: str, run_id: str) -> Run:
        """Declare that no more chunks will come; the run completes when those held finish."""
        if self._refusal is not None:
            raise self._refusal
        run = self.get_run(proc_id, run_id)
        self.runs.close_input(run)
        return run

    def cancel(self, proc_id: str, run_id: str) -> tuple[Run, int]:
        """Stop a run early (`RunMap.cancel`): end of input, and its waiting chunks
        failed without running; running ones finish. Returns the run and how many
        chunks were cancelled. Idempotent: a second call cancels nothing."""
        if self._refusal is not None:  # recovering, or the journal failed: no writes
            raise self._refusal
        run = self.get_run(proc_id, run_id)
        if not run.finished:
            self.scheduler.withdraw(run)  # (WAITING still: the cancel fails them next)
        cancelled = self.runs.cancel(run)
        if cancelled:
            log.info(
                "run %s/%s cancelled: %d waiting chunks failed",
                proc_id,
                run_id,
                len(cancelled),
                extra=about(proc_id, run_id),
            )
        return run, len(cancelled)

    async def retry(self, proc_id: str, run_id: str) -> tuple[Run, int, int]:
        """Re-queue a run's FAILED chunks and send its failed deliveries again.

        The chunks become WAITING (error and output cleared) and go to the work model
        again; a finished run is RUNNING again until they end (then SUCCEEDED or ERRORED
        as ever). Idempotent: with nothing failed, nothing changes. A 429 when the
        chunks would overflow `max_pending`. Returns the run and how many chunks and
        deliveries were re-queued.
        """
        if self._refusal is not None:  # recovering, or the journal failed: no writes
            raise self._refusal
        run = self.get_run(proc_id, run_id)
        if run.finished:  # its workers were let go: wait until they are, to open anew
            await self.scheduler.released(run)
            run = self.get_run(proc_id, run_id)  # (it may have been deleted meanwhile)
        if not run.counts[FAILED] and not run.undelivered:
            return run, 0, 0
        if self.closing:
            raise ShuttingDown()
        if run.stored:  # its failures are in the journal only: take them back first
            chunks = await self._read_all(run)
            if run.removed:
                raise RunNotFound(proc_id, run_id)
            self.runs.reload(run, chunks)  # (a no-op if a retry meanwhile did it)
        waiting = self.runs.counts[WAITING]
        failed = run.counts[FAILED]
        if waiting + failed > self.settings.max_pending:
            raise ExecutorFull(
                f"retrying {failed} chunks would make {waiting + failed} waiting, more "
                f"than the executor holds ({self.settings.max_pending}, --max-pending); "
                "retry later",
                self.settings.retry_after,
            )
        if run.finished:
            self.scheduler.reopen(run, self.registry.get(proc_id))
        chunks, outputs = self.runs.retry(run)
        if chunks:
            self.scheduler.submit(run, chunks)
        if outputs:
            assert self.downstream is not None
            for chunk, locations in outputs:
                self.downstream.deliver(run, chunk, locations)
        log.info(
            "run %s/%s retried: %d failed chunks and %d failed deliveries queued again",
            proc_id,
            run_id,
            len(chunks),
            len(outputs),
            extra=about(proc_id, run_id),
        )
        return run, len(chunks), len(outputs)

    # -- live control ------------------------------------------------------------------

    def _controllable(self, proc_id: str, run_id: str, what: str) -> Run:
        """The run to change live, or why not: recovering or a failed journal (503),
        unknown (404), finished (409), shutting down (503)."""
        if self._refusal is not None:
            raise self._refusal
        run = self.get_run(proc_id, run_id)
        if run.finished:
            raise Conflict(
                f"run {run_id!r} of processor {proc_id!r} has {run.state.value}: a finished "
                f"run cannot be {what}"
            )
        if self.closing:
            raise ShuttingDown()
        return run

    def change_run(
        self, proc_id: str, run_id: str, change: RunChange, unknown: Sequence[str] = ()
    ) -> tuple[Run, list[str]]:
        """Change a running run's `MaxWorkers`, `ChunkTimeout` and `WorkModel` live
        (`PATCH …/config`): given fields change, absent or null ones stay. Validated as
        Configure validates them (a ChunkTimeout above `--max-chunk-timeout` is a 400
        that changes nothing; a MaxWorkers above `--max-workers` is clamped, with a
        warning). Takes effect at once, no chunk lost or run twice (see `Scheduler`);
        a ChunkTimeout holds for chunks that start from now on. The same change again
        is a no-op. Journalled (`RunControlled`), so a restart keeps it. Returns the run
        and this change's warnings (which also join the run's `Warnings`)."""
        run = self._controllable(proc_id, run_id, "changed")
        if unknown and self.settings.strict_config:
            raise InvalidInput(
                "unknown field(s) in the change (refused under --strict-config): "
                + ", ".join(unknown)
            )
        warnings = [f"unknown field {path} ignored" for path in unknown]
        ec = run.configuration.ExecutorConfig
        updates: dict[str, Any] = {
            name: getattr(change, name)
            for name in ("MaxWorkers", "ChunkTimeout", "WorkModel")
            if getattr(change, name) is not None
        }
        if "ChunkTimeout" in updates:
            self.check_chunk_timeout(
                Configuration(ExecutorConfig=ExecutorConfig(ChunkTimeout=updates["ChunkTimeout"]))
            )
        updates = {k: v for k, v in updates.items() if getattr(ec, k) != v}
        if not updates:
            return run, warnings  # nothing new: a no-op (idempotent)
        new = ec.model_copy(update=updates)
        max_workers = self._run_workers(new.MaxWorkers, warnings)
        target = new.WorkModel or self.settings.work_model
        cls = self.registry.get(proc_id)
        before = run.max_workers
        try:
            # Each may refuse (a work model without live control) before changing anything.
            if "WorkModel" in updates:
                self.scheduler.switch(run, target, cls)
            run.max_workers = max_workers
            self.scheduler.resize(run)
        except NotImplementedError as exc:
            run.max_workers = before
            raise Conflict(f"run {run_id!r} cannot be changed live: {exc}") from None
        run.timeout = new.ChunkTimeout or None
        run.configuration = run.configuration.model_copy(update={"ExecutorConfig": new})
        for warning in warnings:
            if warning not in run.warnings:
                run.warnings.append(warning)
        self.runs.control(
            run, {k: v.value if isinstance(v, Enum) else v for k, v in updates.items()}
        )
        log.info(
            "run %s/%s changed live: %s",
            proc_id,
            run_id,
            ", ".join(f"{k} {v}" for k, v in updates.items()),
            extra=about(proc_id, run_id),
        )
        return run, warnings

    def pause(self, proc_id: str, run_id: str) -> Run:
        """Pause a run: none of its chunks starts (those running finish), AddData still
        takes chunks up to `max_pending`, and the run does not finish, until `resume`.
        Idempotent; journalled (a restart keeps it paused)."""
        run = self._controllable(proc_id, run_id, "paused")
        if not run.paused:
            try:
                self.scheduler.pause(run)
            except NotImplementedError as exc:
                raise Conflict(f"run {run_id!r} cannot be paused: {exc}") from None
            self.runs.pause(run)
            log.info("run %s/%s paused", proc_id, run_id, extra=about(proc_id, run_id))
        return run

    def resume(self, proc_id: str, run_id: str) -> Run:
        """Resume a paused run: its waiting chunks start again (it may finish at once,
        if it was only held back by the pause). Idempotent; journalled."""
        run = self._controllable(proc_id, run_id, "resumed")
        if run.paused:
            self.scheduler.resume(run)
            self.runs.resume(run)
            log.info("run %s/%s resumed", proc_id, run_id, extra=about(proc_id, run_id))
        return run

    def executor_limits(self) -> dict[str, int]:
        """The executor-wide limits now (`GET /executor`)."""
        return {"MaxWorkers": self.settings.max_workers, "MaxPending": self.settings.max_pending}

    def set_limits(self, max_workers: int | None = None, max_pending: int | None = None) -> None:
        """Change the executor-wide limits live (`PATCH /executor`): `max_workers`
        (instances and chunks at once, across all runs; each run's share follows) and
        `max_pending` (waiting chunks before 429). Not journalled: the flags (or the
        configuration) are the operator's, and a restart starts from them again."""
        if self._refusal is not None:
            raise self._refusal
        if self.closing:
            raise ShuttingDown()
        old = self.settings
        try:
            settings = dataclasses.replace(
                old,
                max_workers=old.max_workers if max_workers is None else max_workers,
                max_pending=old.max_pending if max_pending is None else max_pending,
            )
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        self.settings = settings
        if settings.max_workers != old.max_workers:
            self.threads.resize(settings.max_workers)
            for run in self.runs:  # each run's share of the new limit, as Configure says
                if not run.finished:
                    asked = run.configuration.ExecutorConfig.MaxWorkers
                    run.max_workers = self._run_workers(asked)
            self.scheduler.set_max_workers(settings.max_workers)
        if settings != old:
            log.info(
                "executor limits changed live: max workers %d, max pending %d",
                settings.max_workers,
                settings.max_pending,
            )

    # -- finished runs, served from the journal ----------------------------------------

    def _run_finished(self, run: Run) -> None:
        if self.runs.durable and not self.closing:
            task = asyncio.get_running_loop().create_task(self._store_finished(run))
            self._storing.add(task)
            task.add_done_callback(self._storing.discard)

    async def _store_finished(self, run: Run) -> None:
        """Let a finished run's chunks go from memory once the journal has committed
        everything of it (`RunMap.store`); kept in memory if the commit fails."""
        flushed = self.runs.flush()
        if flushed is None:
            return
        try:
            await flushed
        except JournalError:
            return  # (the executor refuses writes from now on; reads keep working)
        # A retry may have taken it up again meanwhile: then it is stored when it
        # finishes again.
        if run.finished and not run.deliveries_pending:
            self.runs.store(run)

    async def _read_all(self, run: Run) -> list[Chunk]:
        """Every chunk of a stored run, from the journal, in arrival order."""
        return await self.chunks_of(run, limit=None)

    async def chunks_of(
        self,
        run: Run,
        *,
        state: DataChunkState | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Chunk]:
        """A stored run's chunks read from the journal: those in `state` (any if None)
        after the chunk `after` (`ChunkNotFound` if it is none of the run's), at most
        `limit` (all if None), in arrival order. Read in pages: the journal's reader
        thread does the work, the loop only converts."""
        assert self.journal is not None
        out: list[Chunk] = []
        page_size = 2_000
        while True:
            want = page_size if limit is None else min(page_size, limit - len(out))
            try:
                page = await self.journal.chunks(
                    run.proc_id, run.run_id, state=state, after=after, limit=want
                )
            except RunNotFound:
                return out  # purged or deleted meanwhile: what was read so far
            out += map(from_stored, page)
            if len(page) < want or (limit is not None and len(out) >= limit):
                return out
            after = page[-1].chunk_id

    async def input_chunk(self, proc_id: str, run_id: str, chunk_id: str) -> Chunk:
        """One input chunk, from memory or (a stored run) from the journal."""
        run = self.get_run(proc_id, run_id)
        if not run.stored:
            return run.chunk(chunk_id)
        assert self.journal is not None
        try:
            return from_stored(await self.journal.chunk(proc_id, run_id, chunk_id))
        except RunNotFound:
            raise ChunkNotFound(run_id, chunk_id, "input") from None

    async def output_chunk(self, proc_id: str, run_id: str, output_id: str) -> Chunk:
        """One output chunk by its own ID, from memory or (a stored run) the journal."""
        run = self.get_run(proc_id, run_id)
        if not run.stored:
            return run.output(output_id)
        assert self.journal is not None
        try:
            return from_stored(await self.journal.output(proc_id, run_id, output_id))
        except RunNotFound:
            raise ChunkNotFound(run_id, output_id, "output") from None

    async def held_chunks(self, run: Run, chunks: list[Chunk]) -> dict[str, Chunk]:
        """The chunks of a stored run with the IDs of `chunks` (a resend's check needs
        the content first sent), read from the journal: one by one for a few, the whole
        run for a large batch."""
        ids = {chunk.id for chunk in chunks}
        if len(ids) > 100:
            return {c.id: c for c in await self._read_all(run) if c.id in ids}
        assert self.journal is not None
        held: dict[str, Chunk] = {}
        for chunk_id in ids:
            try:
                stored = await self.journal.chunk(run.proc_id, run.run_id, chunk_id)
            except (ChunkNotFound, RunNotFound):
                continue
            held[chunk_id] = from_stored(stored)
        return held

    async def delete_run(self, proc_id: str, run_id: str) -> Run:
        """Forget a run, cancelling its waiting and running chunks, so memory is given back,
        and remove its journal rows and its files (`data_dir/<processor>/<run>`)."""
        if self._refusal is not None:
            raise self._refusal
        run = self.get_run(proc_id, run_id)
        await self._drop(run, journal=True)
        await self.commit()
        await self._remove_files(proc_id, run_id)
        return run

    async def purge_finished(self, now: float | None = None) -> list[tuple[str, str]]:
        """Remove the runs that finished more than `keep_finished` seconds before `now`
        (the `clock`'s time if None): their journal rows (`JournalStore.purge`), their
        place in the run map (as DELETE, without journalling a delete again: the rows
        are gone) and their files. Returns their (proc_id, run_id).

        Does nothing with `keep_finished` None, while recovering, after the journal
        failed, or once the executor is closing.
        """
        keep = self.settings.keep_finished
        if keep is None or self.journal is None or self._refusal is not None or self.closing:
            return []
        before = (self.clock() if now is None else now) - keep
        removed = await self.journal.purge(before)
        for proc_id, run_id in removed:
            run = self.runs.find(proc_id, run_id)
            if run is not None:
                await self._drop(run, journal=False)
            await self._remove_files(proc_id, run_id)
        if removed:
            log.info("removed %d runs finished over %g s ago", len(removed), keep)
        return removed

    async def _drop(self, run: Run, *, journal: bool) -> None:
        """Forget a run: out of the run map, its waiting and running chunks cancelled
        (and failed, saying why), its chunks let go so memory is given back. `journal`
        says whether to journal the removal (not when the journal removed it itself)."""
        unfinished = self.runs.remove(run, journal=journal)
        await self.scheduler.delete(run)
        # Its running chunks failed as they were cancelled; the queued ones never ran.
        for chunk in unfinished:
            self.runs.fail(run, chunk, "run was deleted before the chunk finished")
        run.chunks.clear()
        run.outputs.clear()
        run.order.clear()

    async def _remove_files(self, proc_id: str, run_id: str) -> None:
        """Remove a run's folder under the data directory (`data_dir/<processor>/<run>`)."""
        folder = self.settings.data_dir / folder_name(proc_id) / folder_name(run_id)
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)

    async def wait(
        self,
        proc_id: str,
        run_id: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Run:
        """Wait until a run is SUCCEEDED or ERRORED (or deleted)."""
        run = self.get_run(proc_id, run_id)
        async with asyncio.timeout(timeout):
            await run.done.wait()
        return run
