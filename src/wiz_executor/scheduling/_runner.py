"""Running one chunk on one processor instance, whatever the work model.

Every way a chunk can end is handled here, so a chunk never stays RUNNING: it succeeds
with an output, or fails with a message a person can act on (an exception's text, a
timeout, a cancellation by delete or shutdown). A processor can never take the
executor down.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any

import msgspec

from .._logs import about
from ..api import DataFormat
from ..errors import ChunkFailed, ChunkTimeout, WizError
from ..metrics import ChunkStats
from ..netpolicy import NetworkPolicy, default_policy
from ..processors import Context, Input, Limits, Output, Processor
from ..runs import RUNNING, WAITING, Chunk, Run, RunMap
from ..wire import MAX_DEPTH, too_deep
from ._deadlines import Deadlines
from ._threads import BlockingCall, ProcessorThreads

log = logging.getLogger(__name__)

OutputHook = Callable[[Run, Chunk], None]

PROCESSOR_ERRORS = (Exception, SystemExit)
"""What a processor's code may raise to fail its chunk. SystemExit counts (a library
calling `sys.exit` must not stop the server); cancellation and Ctrl-C do not."""


class _Traits:
    """What running a processor class's chunks depends on, worked out once per class."""

    __slots__ = ("duration", "is_async", "override_fields")

    def __init__(self, cls: type[Processor[Any]], stats: ChunkStats) -> None:
        self.duration = stats.duration(cls.id)
        self.is_async = cls.is_async()
        base = getattr(Processor.config_for_chunk, "__func__", None)
        own = getattr(cls.config_for_chunk, "__func__", None)
        self.override_fields: frozenset[str] | None = (
            frozenset(cls.Config.model_fields) if own is base else None
        )
        """The configuration fields a chunk's RawData may override; None when the class
        has its own `config_for_chunk`, which is then asked about every chunk."""


class ChunkRunner:
    """Executes chunks and records their outcome in the run map."""

    def __init__(
        self,
        runs: RunMap,
        threads: ProcessorThreads,
        data_dir: Path,
        default_timeout: float | None = None,
        allowed_roots: tuple[Path, ...] = (),
        limits: Limits | None = None,
    ) -> None:
        self.runs = runs
        self.threads = threads
        self.data_dir = data_dir
        self.default_timeout = default_timeout
        self.allowed_roots = allowed_roots
        self.network: NetworkPolicy | None = None
        """What processors may connect to (the executor's policy); None = the defaults."""
        self.tls: ssl.SSLContext | None = None
        """What processors' HTTPS clients trust (the executor's `ssl_ca_certs` included);
        None: the default trust."""
        self.limits = limits or Limits(data_dir=data_dir, allowed_roots=allowed_roots)
        """The operator's ceilings: a chunk's overrides are held to them as the run was."""
        self.on_output: OutputHook | None = None
        """Called when a chunk of a run that sends downstream has succeeded."""
        self._encode = msgspec.json.Encoder().encode
        self._traits: dict[type[Processor[Any]], _Traits] = {}
        self.deadlines = Deadlines()
        """The running chunks' timeouts, on one timer (`asyncio.timeout` per chunk made
        and dropped a loop timer per chunk)."""
        self.stats = ChunkStats()
        """How long chunks ran, per processor, for the metrics."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    async def execute(
        self,
        run: Run,
        chunk: Chunk,
        instance: Processor[Any],
        task: asyncio.Task[Any] | None = None,
    ) -> bool:
        """Run one chunk to SUCCEEDED or FAILED.

        `task` is the task running it (the current one), if the caller has it at hand:
        a worker that runs many chunks passes its own rather than have it looked up per
        chunk.

        Returns whether `instance` may take another chunk: not when a blocking `run`
        timed out, since its thread cannot be interrupted and may still be using it.
        """
        if chunk.state is not WAITING:  # cancelled while it waited (`RunMap.cancel`)
            return True
        runs = self.runs
        if task is None:
            task = asyncio.current_task()
        durable = runs.start(run, chunk, task.get_name() if task is not None else "")
        cls = type(instance)
        traits = self._traits.get(cls)
        if traits is None:
            traits = self._traits[cls] = _Traits(cls, self.stats)
        started = perf_counter()
        pending: Awaitable[Any] | None = None
        try:
            timeout = run.timeout or self.default_timeout
            if durable is not None:  # a recovered chunk: its attempt is counted first
                await durable
            raw = chunk.raw_data
            data = Input(chunk.id, chunk.in_format, raw, chunk.fs_driver, chunk.fs_location)
            try:
                fields = traits.override_fields
                if fields is None or (type(raw) is dict and not fields.isdisjoint(raw)):
                    config = cls.config_for_chunk(run.processor_config, raw)
                    if config is not run.processor_config:  # checked at Configure
                        config = cls.apply_limits(config, self.limits)
                else:  # nothing in this chunk can change the run's configuration
                    config = run.processor_config
                network = self.network
                if network is None:  # (as `Context` defaults it)
                    network = self.network = default_policy()
                context = Context._of_chunk(
                    run.proc_id,
                    run.run_id,
                    chunk.id,
                    config,
                    self.data_dir,
                    self._progress_sink(run, chunk),
                    self.allowed_roots,
                    network,
                    self.tls,
                    self.limits,
                    chunk.attempt,
                )
                pending = self._call(instance, data, context, traits.is_async)
                if timeout:
                    assert task is not None
                    deadline = self.deadlines.start(task, timeout)
                    try:
                        result = await pending
                    except TimeoutError:
                        if deadline.expired:  # (raised as the deadline cancelled it)
                            task.uncancel()
                            raise
                        raise RuntimeError("TimeoutError raised by the processor") from None
                    except asyncio.CancelledError:
                        if deadline.timed_out():
                            raise TimeoutError from None
                        raise
                    else:
                        if deadline.expired:  # the processor swallowed the cancellation
                            task.uncancel()
                    finally:
                        self.deadlines.end(deadline)
                else:
                    result = await pending
            except TimeoutError:
                if type(pending) is BlockingCall:  # its thread may be stuck: replace it
                    self.threads.abandon(pending)
                runs.fail(run, chunk, ChunkTimeout(timeout or 0).message)
                return traits.is_async
            except asyncio.CancelledError:
                if type(pending) is BlockingCall:
                    self.threads.abandon(pending)
                cancelled(runs, run, chunk)
                raise
            except WizError as exc:
                runs.fail(run, chunk, exc.message)
                return True
            except PROCESSOR_ERRORS as exc:
                # The failure itself is a WARNING line of the run log; the traceback,
                # for processor authors, only at DEBUG.
                log.debug(
                    "processor %s failed chunk %s of run %s/%s",
                    cls.id,
                    chunk.id,
                    run.proc_id,
                    run.run_id,
                    exc_info=True,
                    extra=about(run.proc_id, run.run_id, chunk.id),
                )
                runs.fail(run, chunk, f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
                return True
            self._record(run, chunk, result, data.raw_data)
            return True
        finally:  # every chunk that ran, whatever its end, is timed for the metrics
            traits.duration.observe(perf_counter() - started)

    def _call(
        self, instance: Processor[Any], data: Input, context: Context[Any], is_async: bool
    ) -> Awaitable[Any]:
        # A plain function handing back what to await: no coroutine of its own per chunk.
        if is_async:
            result: Awaitable[Any] = instance.run(data, context)
            return result
        threads = self.threads
        if threads.abandoned >= threads.max_abandoned:
            refusal = threads.refusal(type(instance))
            if refusal is not None:
                raise ChunkFailed(refusal)
        return threads.call(type(instance), instance.run, data, context)

    def record(self, run: Run, chunk: Chunk, result: Any, raw_in: Any) -> None:
        """Record what a processor returned for a chunk run elsewhere (RAY): checked,
        then SUCCEEDED (and sent downstream) exactly as a chunk run here."""
        self._record(run, chunk, result, raw_in)

    def _record(self, run: Run, chunk: Chunk, result: Any, raw_in: Any) -> None:
        if isinstance(result, Output):
            fmt, raw, driver, location = (
                result.format,
                result.raw_data,
                result.driver,
                result.location,
            )
        else:
            fmt, raw, driver, location = DataFormat.RAW, result, "", ""
        if raw is not raw_in:  # what came in as JSON goes out as JSON; anything else is checked
            if too_deep(raw):
                self.runs.fail(run, chunk, f"processor output nests deeper than {MAX_DEPTH} levels")
                return
            try:
                self._encode(raw)
            except (TypeError, ValueError, OverflowError) as exc:
                self.runs.fail(run, chunk, f"processor output is not JSON: {exc}")
                return
        ec = run.configuration.ExecutorConfig
        # SendDownstream with no locations (how the original manager configures a
        # pipeline's leaves) has nowhere to send, so nothing is sent.
        sends = ec.SendDownstream and bool(ec.DownstreamLocations) and self.on_output is not None
        # (with `sends`, the run completes only once the output is delivered)
        self.runs.succeed(run, chunk, fmt, raw, driver, location, sends=sends)
        if sends:
            assert self.on_output is not None
            self.on_output(run, chunk)

    def _progress_sink(self, run: Run, chunk: Chunk) -> Callable[[int, int | None], None]:
        if self._loop is None:  # the run map's loop, and the thread it runs on
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        return partial(self._report, run, chunk)

    def _report(self, run: Run, chunk: Chunk, done: int, total: int | None) -> None:
        if threading.get_ident() == self._loop_thread:
            self.runs.progress(run, chunk, done, total)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.runs.progress, run, chunk, done, total)


async def new_instance(cls: type[Processor[Any]], config: Any) -> Processor[Any]:
    """Make and set up a processor instance, skipping the hook when it does nothing."""
    instance = cls(config)
    if cls.setup is not Processor.setup:
        await instance.setup()
    return instance


async def discard_instance(instance: Processor[Any]) -> None:
    """Tear an instance down; a failing teardown is logged, never raised."""
    if type(instance).teardown is Processor.teardown:
        return
    try:
        await instance.teardown()
    except PROCESSOR_ERRORS:
        log.warning("teardown of processor %s failed", type(instance).id, exc_info=True)


def setup_failure(exc: BaseException) -> str:
    return f"processor setup failed: {type(exc).__name__}: {exc}"


def cancelled(runs: RunMap, run: Run, chunk: Chunk) -> None:
    """A chunk's work was cancelled: by a delete, it fails; by the shutdown, it fails
    too with an ephemeral store, but with a durable one it is left unfinished in the
    journal (WAITING, or RUNNING with an attempt that never ended) to run after the
    restart."""
    if runs.durable and not run.removed:
        runs.interrupt(run, chunk)
    else:
        runs.fail(run, chunk, cancelled_message(run, chunk))


def cancelled_message(run: Run, chunk: Chunk) -> str:
    """Why a chunk whose work was cancelled failed: its run was deleted, or the
    executor stopped (before the chunk started, or while it ran)."""
    if run.removed:
        return "run was deleted before the chunk finished"
    if chunk.state is RUNNING:
        return "executor shut down before the chunk finished"
    return "executor shut down before this chunk ran"
