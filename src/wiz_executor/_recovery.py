"""Recovery: rebuilding an executor's run map from its journal after a restart.

One pass over what `JournalStore.load()` hands back, run as a task of the executor's
(`Executor.recovered()` awaits it): each run comes back with its chunks in arrival order,
their states, outputs, errors and attempt histories. Chunks that had not ended (WAITING,
or RUNNING when the process stopped) go back to WAITING and to their run's work model:
processing is at-least-once. A chunk that already started `--max-attempts` times
without ending fails instead (a poison chunk), and a run whose processor is gone fails
its unfinished chunks, saying so. Pending deliveries are resent. The collector is put
off meanwhile: recovery makes a million objects and frees none.

The functions take the executor as `self`: they are its methods, kept in a module of
their own so that the executor's module stays about serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .api import Configuration, ExecutorConfig, State
from .errors import JournalError, WizError
from .journal import JournalStore, StoredChunk, StoredRun
from .processors import Processor
from .runs import FINISHED, SUCCEEDED, WAITING, Chunk, from_stored

if TYPE_CHECKING:
    from .executor import Executor

log = logging.getLogger("wiz_executor.executor")


async def recover(self: Executor, store: JournalStore) -> None:
    """Rebuild the run map from the journal, then let writes in (see the module)."""
    started = perf_counter()
    # Recovery makes a million objects and frees none: the collector's passes over
    # them (set off by allocation counts) would find nothing and cost most of it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        recovered = await asyncio.to_thread(store.load)
        for stored in recovered.runs:
            await _restore(self, stored)
    except JournalError as exc:
        log.critical("recovery failed: %s", exc.message)
        self.recovery_error = self._refusal = exc
        return
    except Exception as exc:
        log.exception("recovery from the journal %s failed", self.settings.journal_path)
        error = JournalError(
            str(self.settings.journal_path), f"recovery from the journal failed: {exc}"
        )
        self.recovery_error = self._refusal = error
        return
    finally:
        self.recovering = False
        if collecting:
            gc.enable()
    self._refusal = None
    found = self.recovery
    found["runs"] = len(recovered.runs)
    if recovered.runs:
        log.info(
            "recovered from %s in %.2f s: %d runs (%d unfinished), %d chunks requeued, "
            "%d failed as poison, %d deliveries pending",
            self.settings.journal_path,
            perf_counter() - started,
            found["runs"],
            found.get("unfinished", 0),
            found.get("requeued", 0),
            found.get("poison", 0),
            found.get("deliveries", 0),
        )


async def _restore(self: Executor, stored: StoredRun) -> None:
    """Put one journalled run back: its chunks, counts and state; requeue what had
    not ended (failing poison chunks), resend its pending deliveries."""
    found = self.recovery
    proc_id, run_id = stored.proc_id, stored.run_id
    requested = configuration = Configuration.model_validate(stored.configuration)
    if stored.control:
        configuration = _with_control(configuration, stored.control, proc_id, run_id)
    cls: type[Processor[Any]] | None = None
    problem: str | None = None
    processor_config: BaseModel = _NoConfig()
    if proc_id not in self.registry:
        problem = (
            f"processor {proc_id!r} is not served by this executor any more (the "
            "executor restarted without it), so the chunk cannot run"
        )
    else:
        cls = self.registry.get(proc_id)
        try:
            processor_config, _ = cls.check_config(configuration.Processor, allow_unknown=True)
            # Held to this start's ceilings, as Configure holds a new run (0 = the ceiling).
            processor_config = cls.apply_limits(processor_config, self.limits)
            self.check_chunk_timeout(configuration)
        except WizError as exc:
            cls = None
            problem = f"the run's configuration is no longer valid: {exc.message}"
    run = self._new_run(proc_id, run_id, configuration, processor_config, [])
    run.started = stored.created
    run.requested = requested
    if stored.control:
        run.control = dict(stored.control)
        run.paused = stored.state is None and bool(stored.control.get("Paused"))
        run.cancelled = bool(stored.control.get("Cancelled"))
    stored_chunks = stored.chunks
    # A finished run comes back stored (`Run.stored`): its chunks stay in the journal,
    # read when asked. (Without counts, which a journal always has for a finished run,
    # they are read page by page, as before.)
    keep_stored = stored_chunks is None and bool(stored.counts)
    if stored_chunks is None and not keep_stored:
        stored_chunks = await _read_chunks(self, proc_id, run_id)
    chunks = [from_stored(c) for c in stored_chunks or ()]
    limit = self.settings.max_attempts
    waiting: list[Chunk] = []
    poison: list[tuple[Chunk, str]] = []
    if stored.state is None:
        for chunk in chunks:
            if chunk.state not in FINISHED:
                chunk.state = WAITING  # RUNNING when the process stopped: runs again
                ended = sum(1 for a in chunk.attempts or () if a.outcome is None)
                if problem is not None:
                    poison.append((chunk, problem))
                elif ended >= limit:
                    poison.append((chunk, _gave_up(ended, limit)))
                else:
                    waiting.append(chunk)
        run.state = State.RUNNING if chunks else State.CONFIGURED
    else:
        run.state = stored.state
        run.ended = stored.finished
    # A run that cannot run any more takes no more chunks: it ends once those it holds
    # are failed below, instead of queueing new ones for a work model it does not have.
    run.input_closed = stored.input_closed or problem is not None
    self.runs.restore(run, chunks, stored.counts if keep_stored else None)
    locations = tuple(range(len(configuration.ExecutorConfig.DownstreamLocations or ())))
    if keep_stored and locations and run.state is State.ERRORED:
        # Only its failed deliveries are wanted (for `retry`): scanned, not kept.
        chunks = [from_stored(c) for c in await _read_chunks(self, proc_id, run_id)]
    for chunk in chunks:
        if chunk.delivery_error is not None:  # (which locations failed is not journalled)
            run.deliveries_failed += 1
            run.undelivered[chunk.id] = locations
    if run.finished:
        return
    found["unfinished"] = found.get("unfinished", 0) + 1
    resend: dict[str, Chunk] = {}
    for delivery in stored.deliveries:
        sent = run.chunks.get(delivery.chunk_id)
        if sent is not None and sent.state is SUCCEEDED:
            resend[sent.id] = sent
    for _ in resend:
        self.runs.delivery_started(run)
    if cls is not None:
        self.scheduler.open(run, cls)
        if run.paused:  # its chunks wait for the resume, as before the restart
            self.scheduler.pause(run)
    for chunk, why in poison:
        self.runs.fail(run, chunk, why)
    if waiting:
        self.runs.recovered.update(map(id, waiting))
        self.scheduler.submit(run, waiting)
    assert self.downstream is not None
    for chunk in resend.values():
        self.downstream.deliver(run, chunk)
    self.runs.settle(run)
    found["requeued"] = found.get("requeued", 0) + len(waiting)
    found["poison"] = found.get("poison", 0) + len(poison)
    found["deliveries"] = found.get("deliveries", 0) + len(resend)
    if poison:
        log.warning(
            "run %s/%s: %d chunks failed at recovery: %s",
            proc_id,
            run_id,
            len(poison),
            poison[0][1],
        )


async def _read_chunks(self: Executor, proc_id: str, run_id: str) -> list[StoredChunk]:
    assert self.journal is not None
    out: list[StoredChunk] = []
    after: str | None = None
    while True:
        page = await self.journal.chunks(proc_id, run_id, after=after, limit=10_000)
        out += page
        if len(page) < 10_000:
            return out
        after = page[-1].chunk_id


def _with_control(
    configuration: Configuration, control: dict[str, Any], proc_id: str, run_id: str
) -> Configuration:
    """The configuration with a run's live changes (`RunControlled`) applied over it;
    as it was if they no longer validate (logged)."""
    ec = configuration.ExecutorConfig
    changes = {k: control[k] for k in ("MaxWorkers", "ChunkTimeout", "WorkModel") if k in control}
    if not changes:
        return configuration
    try:
        changed = ExecutorConfig.model_validate({**ec.model_dump(mode="json"), **changes})
    except ValidationError as exc:
        log.warning(
            "run %s/%s: its live changes %s no longer apply (%s); it keeps its configuration",
            proc_id,
            run_id,
            changes,
            exc.errors(include_url=False)[0]["msg"],
        )
        return configuration
    return configuration.model_copy(update={"ExecutorConfig": changed})


class _NoConfig(BaseModel):
    """The processor configuration of a recovered run whose processor is gone."""


def _gave_up(times: int, limit: int) -> str:
    return (
        f"ran {times} times without ending (the executor stopped or crashed each time); "
        f"giving up after --max-attempts {limit}"
    )
