"""RAY: a run's chunks go, in micro-batches, to Ray actors that each hold one instance.

Per run, up to `MaxWorkers` actors (`ChunkActor`, `_ray_worker.py`), each with one
processor instance that ran `setup` once on its node: POOL's model, on a Ray cluster.
Each actor is fed by two *lanes* (tasks here), so two batches are in flight per actor
and the actor never waits for the executor between batches. A lane takes what is
queued, up to `BatchSize` chunks (lingering a few milliseconds for more when its actor
is busy anyway), so Ray's per-call cost is paid per batch, not per chunk.

Every chunk in flight holds a slot of the executor-wide limiter (`--max-workers`): the
queue bound and 429s work as for the other models. Results come home as the batch's
answer and are recorded by the same `ChunkRunner` code; a running chunk's progress is
polled from its actor while its batch takes long.

Faults: an actor (or its node) that dies takes its batches' chunks back to the run's
queue (their attempt ends with the reason; the next one is a new attempt, up to
`--max-attempts`) and is replaced. While Ray cannot be reached, or no node has what a
run's actors ask for, chunks wait and `waiting_reason` says why.

The Ray runtime is joined (`--ray-address`) or started (loopback only, dashboard off)
by the first RAY run, never before: an executor that runs no RAY run never imports Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .._tls import ca_bundle_pem
from ..api import ExecutorConfig, RayConfig, WorkModel
from ..processors import Output, Processor
from ..runs import RUNNING, Chunk, Run
from ..settings import Settings
from ._limits import WorkerLimiter
from ._model import WorkModelBase
from ._ray_worker import (
    BROKEN,
    FORMATS,
    OK,
    RAW,
    actor_class,
    import_ray,
    pack,
    sees_file_task,
    unpack,
)
from ._registry import register
from ._runner import ChunkRunner, cancelled

log = logging.getLogger(__name__)

LANES = 2
"""Batches in flight per actor."""

LINGER = 0.002
"""Seconds a lane waits for a fuller batch when its actor has a batch to run anyway."""

POLL = 0.25
"""Seconds between progress polls of an actor running a long batch."""

RETRY = 1.0
"""Seconds between tries to reach Ray, or to place a run's actors, while they fail."""

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray starts, or Ray names the machine's interface address as the
node's IP even when told 127.0.0.1 (measured with Ray 2.60 on Linux)."""


class RayUnavailable(Exception):
    """Ray cannot be reached or started (the message says why)."""


class _Runtime:
    """The Ray connection, made once by the first RAY run (in a thread: it blocks)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_here = False
        self.unseen: list[str] = []
        """Nodes that could not see the data directory (the shared-storage check)."""
        self._lock = threading.Lock()
        self._connected = False

    async def ready(self) -> None:
        if not self._connected:
            await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        with self._lock:
            if self._connected:
                return
            os.environ.setdefault(LOOPBACK_ENV, "0")
            try:
                ray = import_ray()
            except ImportError as exc:
                raise RayUnavailable(
                    "Ray is not installed: pip install 'wiz-executor[ray]'"
                ) from exc
            settings = self.settings
            try:
                if not ray.is_initialized():
                    if settings.ray_address:
                        ray.init(address=settings.ray_address, log_to_driver=False)
                    else:
                        ray.init(
                            # "local": a runtime of its own, never one found running here
                            address="local",
                            num_cpus=settings.ray_num_cpus or os.cpu_count() or 1,
                            include_dashboard=False,
                            log_to_driver=False,
                            _node_ip_address="127.0.0.1",
                        )
                        self.started_here = True
                        log.info("started a local Ray runtime (127.0.0.1, dashboard off)")
            except Exception as exc:
                raise RayUnavailable(f"Ray cluster unreachable: {exc}") from exc
            self._connected = True
            self._check_storage(ray)

    def _check_storage(self, ray: Any) -> None:
        """Every node must see the data directory (FILESYSTEM_REF chunks name files in
        it): a task on each node looks for a marker file written here."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        marker = data_dir / f".wiz-ray-check-{uuid.uuid4().hex}"
        marker.write_text("wiz-executor shared storage check\n")
        try:
            task = sees_file_task()
            refs = [
                task.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                ).remote(str(marker))
                for node in ray.nodes()
                if node.get("Alive")
            ]
            for _node, host, seen in ray.get(refs, timeout=60):
                if not seen:
                    self.unseen.append(
                        f"Ray node {host} cannot see the data directory {data_dir}: "
                        "FILESYSTEM_REF chunks it runs will not find their files (mount it "
                        "at the same path on every node)"
                    )
        except Exception as exc:
            self.unseen.append(f"the shared-storage check of the Ray nodes failed: {exc}")
        finally:
            marker.unlink(missing_ok=True)
        for message in self.unseen:
            log.warning("%s", message)

    def stop(self) -> None:
        """Disconnect; stop the runtime if this executor started it."""
        with self._lock:
            if not self._connected:
                return
            self._connected = False
            if self.started_here:
                import_ray().shutdown()
                self.started_here = False
                log.info("stopped the local Ray runtime")


@dataclass(eq=False)
class _Actor:
    handle: Any
    node: str
    host: str
    pid: int
    name: str
    busy: int = 0
    """Batches it has in flight."""
    dead: bool = False
    draining: bool = False
    """Above a lowered MaxWorkers: it takes no more batches and leaves once those in
    flight are done (see `RayModel.resize`)."""


@dataclass(eq=False)
class _RayRun:
    cls: type[Processor[Any]]
    limit: int
    options: dict[str, Any]
    batch_size: int
    queue: deque[Chunk] = field(default_factory=deque)
    actors: list[_Actor] = field(default_factory=list)
    lanes: set[asyncio.Task[None]] = field(default_factory=set)
    busy_lanes: set[asyncio.Task[None]] = field(default_factory=set)
    keeper: asyncio.Task[None] | None = None
    more: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when chunks are queued (or the run closes): idle lanes look again."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the keeper should look at the actors again."""
    starting: int = 0
    peak_actors: int = 0
    """The most actors it had at once, those being started included."""
    closing: bool = False
    waiting: str | None = None
    warned: bool = False


def ray_options(config: RayConfig | None) -> tuple[dict[str, Any], int]:
    """Actor options (`num_cpus`, `num_gpus`, `resources`) and the batch size of a run."""
    config = config or RayConfig()
    options: dict[str, Any] = {"num_cpus": config.NumCPUs, "num_gpus": config.NumGPUs}
    if config.Resources:
        options["resources"] = dict(config.Resources)
    return options, config.BatchSize


@register(WorkModel.RAY)
class RayModel(WorkModelBase):
    def __init__(
        self, runner: ChunkRunner, limiter: WorkerLimiter, settings: Settings | None = None
    ) -> None:
        super().__init__(runner, limiter)
        self.settings = settings or Settings()
        self.runtime = _Runtime(self.settings)
        self._actors = 0
        self._ending: set[asyncio.Task[None]] = set()
        """Drained actors being let go (see `_dismiss`)."""
        self._ca_pem: str | None = None
        """The executor's `--ssl-ca-certs` as PEM text, read by the first actor's start:
        actors trust what POOL's processors trust (the path may not exist on their node)."""

    @classmethod
    def create(cls, runner: ChunkRunner, limiter: WorkerLimiter, settings: Settings) -> RayModel:
        return cls(runner, limiter, settings)

    def open(self, run: Run, cls: type[Processor[Any]]) -> None:
        ec: ExecutorConfig = run.configuration.ExecutorConfig
        options, batch_size = ray_options(ec.Ray)
        run.sched = _RayRun(cls, run.max_workers, options, batch_size)
        self._runs.add(run)

    def waiting_reason(self, run: Run) -> str | None:
        """Why this run's chunks wait for Ray (unreachable, no node with the resources
        its actors ask for), or None."""
        work: _RayRun | None = run.sched if run.work_model is WorkModel.RAY else None
        return None if work is None else work.waiting

    def actors(self, run: Run) -> tuple[int, int]:
        """(actors now, the most it had at once) of a run."""
        work: _RayRun = run.sched
        return len(work.actors), work.peak_actors

    def submit(self, run: Run, chunks: list[Chunk]) -> None:
        work: _RayRun = run.sched
        work.queue.extend(chunks)
        if self.closing or work.closing:
            return
        work.more.set()
        work.changed.set()
        if work.keeper is None:
            work.keeper = asyncio.create_task(self._keep(run, work))

    # -- actors

    async def _keep(self, run: Run, work: _RayRun) -> None:
        """Keep the run's actors: start them while chunks wait (up to its limit),
        replace dead ones, and say why chunks wait while that is not possible."""
        try:
            while not (self.closing or work.closing):
                work.changed.clear()
                busy = sum(1 for a in work.actors if a.busy)
                wanted = min(work.limit, len(work.queue) + busy)
                missing = wanted - len(work.actors) - work.starting
                if missing > 0:
                    try:
                        await self.runtime.ready()
                        self._warn_storage(run, work)
                        self._check_resources(work)
                    except RayUnavailable as exc:
                        if work.waiting != str(exc):
                            log.warning("run %s/%s waits: %s", run.proc_id, run.run_id, exc)
                        work.waiting = str(exc)
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(RETRY):
                                await work.changed.wait()
                        work.changed.set()
                        continue
                    work.waiting = None
                    work.peak_actors = max(
                        work.peak_actors, len(work.actors) + work.starting + missing
                    )
                    for _ in range(missing):
                        work.starting += 1
                        task = asyncio.create_task(self._start_actor(run, work))
                        work.lanes.add(task)
                        task.add_done_callback(work.lanes.discard)
                await work.changed.wait()
        finally:
            work.keeper = None

    def _warn_storage(self, run: Run, work: _RayRun) -> None:
        if not work.warned:
            work.warned = True
            for message in self.runtime.unseen:
                if message not in run.warnings:
                    run.warnings.append(message)

    def _check_resources(self, work: _RayRun) -> None:
        """Refuse to wait silently for what no node of the cluster has at all."""
        ray = import_ray()
        try:
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        except Exception as exc:
            raise RayUnavailable(f"Ray cluster unreachable: {exc}") from exc
        need = {"CPU": work.options["num_cpus"], "GPU": work.options["num_gpus"]}
        need.update(work.options.get("resources", {}))
        need = {k: v for k, v in need.items() if v}
        if not any(all(res.get(k, 0) >= v for k, v in need.items()) for res in nodes):
            wanted = ", ".join(f"{k}={v:g}" for k, v in sorted(need.items()))
            raise RayUnavailable(f"no Ray node has the resources this run's actors need ({wanted})")

    async def _start_actor(self, run: Run, work: _RayRun) -> None:
        handle = None
        try:
            ca_certs = self.settings.ssl_ca_certs
            if ca_certs is not None and self._ca_pem is None:
                self._ca_pem = await asyncio.to_thread(ca_bundle_pem, ca_certs)
            handle = (
                actor_class()
                .options(**work.options)
                .remote(
                    work.cls,
                    run.processor_config,
                    str(self.runner.data_dir),
                    tuple(str(p) for p in self.runner.allowed_roots),
                    self.runner.limits,
                    self.runner.network,
                    self._ca_pem,
                )
            )
            node, host, pid, failure = await handle.ready.remote()
        except asyncio.CancelledError:
            if handle is not None:
                _kill(handle)
            raise
        except Exception as exc:
            # E.g. the processor's module is not importable on the node: as a failed
            # setup, one waiting chunk fails with why (so a run cannot loop on it).
            if handle is not None:
                _kill(handle)
            lines = str(exc).strip().splitlines() or [""]
            failure = f"Ray actor could not start: {type(exc).__name__}: {lines[-1]}"
            log.warning("run %s/%s: %s", run.proc_id, run.run_id, failure)
        finally:
            work.starting -= 1
            work.changed.set()
        if failure is not None:
            _kill(handle)
            if work.queue:  # as in POOL: one chunk fails with why; the next try is anew
                self.runner.runs.fail(run, work.queue.popleft(), failure)
            return
        self._actors += 1
        actor = _Actor(handle, node, host, pid, f"ray-actor-{self._actors}")
        if self.closing or work.closing:
            _kill(handle)
            return
        work.actors.append(actor)
        for _ in range(LANES):
            task = asyncio.create_task(self._lane(run, work, actor))
            work.lanes.add(task)
            task.add_done_callback(work.lanes.discard)

    def _retire(self, work: _RayRun, actor: _Actor) -> None:
        if not actor.dead:
            actor.dead = True
            with contextlib.suppress(ValueError):
                work.actors.remove(actor)
            _kill(actor.handle)
            work.changed.set()

    # -- live control (pause, MaxWorkers and work model changed on a running run)

    def withdraw(self, run: Run) -> list[Chunk]:
        work: _RayRun | None = run.sched
        if work is None:
            return []
        # Batches in flight go on; the actors stay, idle, until `submit` feeds them.
        chunks = list(work.queue)
        work.queue.clear()
        return chunks

    def resize(self, run: Run) -> None:
        """Apply a changed MaxWorkers: raised, the keeper starts actors for the waiting
        chunks at once; lowered, the actors above it (idle ones first) take no more
        batches and leave once their batches in flight are done: no chunk is cut off."""
        work: _RayRun | None = run.sched
        if work is None or work.closing:
            return
        work.limit = run.max_workers
        excess = len([a for a in work.actors if not a.draining]) - work.limit
        for actor in sorted(work.actors, key=lambda a: a.busy):
            if excess <= 0:
                break
            if not actor.draining:
                actor.draining = True
                excess -= 1
                if not actor.busy:
                    self._dismiss(work, actor)
        work.more.set()
        work.changed.set()

    def _dismiss(self, work: _RayRun, actor: _Actor) -> None:
        """Let a drained actor go: its processor's teardown, then the actor."""
        if actor.dead:
            return
        actor.dead = True
        with contextlib.suppress(ValueError):
            work.actors.remove(actor)
        work.changed.set()

        async def end() -> None:
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(actor.handle.teardown.remote(), 10)
            finally:
                _kill(actor.handle)

        task = asyncio.create_task(end())
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    # -- batches

    async def _lane(self, run: Run, work: _RayRun, actor: _Actor) -> None:
        limiter, queue = self.limiter, work.queue
        me = asyncio.current_task()
        assert me is not None
        while not (actor.dead or self.closing or work.closing):
            if actor.draining:
                if not actor.busy:  # (the actor's other lane is done too)
                    self._dismiss(work, actor)
                break
            if not queue:
                work.more.clear()
                await work.more.wait()
                continue
            if not limiter.try_acquire():
                await limiter.acquire()
            if not queue or actor.dead or actor.draining or self.closing or work.closing:
                limiter.release()
                continue
            if actor.busy and len(queue) < work.batch_size:
                await asyncio.sleep(LINGER)
                if not queue or actor.dead or actor.draining or self.closing or work.closing:
                    limiter.release()
                    continue
            # A fair share of what waits, so a short run spreads over its actors.
            size = min(work.batch_size, -(-len(queue) // (LANES * work.limit)))
            batch = [queue.popleft()]
            while queue and len(batch) < size and limiter.try_acquire():
                batch.append(queue.popleft())
            work.busy_lanes.add(me)
            actor.busy += 1
            try:
                await self._run_batch(run, work, actor, batch)
            finally:
                actor.busy -= 1
                work.busy_lanes.discard(me)
                for _ in batch:
                    limiter.release()
        work.changed.set()

    async def _run_batch(self, run: Run, work: _RayRun, actor: _Actor, batch: list[Chunk]) -> None:
        ray = import_ray()
        runs = self.runner.runs
        durable = [
            f
            for chunk in batch
            if (f := runs.start(run, chunk, actor.name, actor.host, actor.pid, actor.node))
            is not None
        ]
        try:
            if durable:
                await asyncio.gather(*durable)
            body = pack(
                [
                    [c.id, c.in_format.value, c.raw_data, c.fs_driver, c.fs_location, c.attempt]
                    for c in batch
                ]
            )
            timeout = run.timeout or self.runner.default_timeout
            ref = actor.handle.run_batch.remote(body, run.proc_id, run.run_id, timeout)
            results = unpack(await self._answer(run, actor, ref, batch))
        except asyncio.CancelledError:
            self._retire(work, actor)
            for chunk in batch:
                if chunk.state is RUNNING:
                    cancelled(runs, run, chunk)
            raise
        except ray.exceptions.RayTaskError as exc:  # our actor code failed: not the chunks'
            for chunk in batch:
                runs.fail(run, chunk, f"Ray batch failed: {exc}")
            return
        except Exception as exc:  # the actor or its node died, or Ray went away
            self._retire(work, actor)
            reason = f"Ray actor on {actor.host} was lost: {type(exc).__name__}"
            log.warning(
                "run %s/%s: %s; its %d chunks run again",
                run.proc_id,
                run.run_id,
                reason,
                len(batch),
            )
            self._requeue(run, work, batch, reason)
            return
        record = self.runner.record
        per_node, key = self.runner.stats.per_node, (actor.node, actor.host)
        per_node[key] = per_node.get(key, 0) + len(batch)
        broken = False
        for chunk, result in zip(batch, results, strict=True):
            if result[0] == OK:
                # The actor checked the output (nesting, JSON): given as the chunk's
                # input, `record` does not check it again on this loop.
                _, fmt, raw, driver, location = result
                if fmt == RAW and not driver and not location:
                    record(run, chunk, raw, raw)
                else:
                    record(run, chunk, Output(FORMATS[fmt], raw, driver, location), raw)
            else:
                broken |= result[0] == BROKEN
                runs.fail(run, chunk, result[1])
        if broken:
            self._retire(work, actor)

    async def _answer(self, run: Run, actor: _Actor, ref: Any, batch: list[Chunk]) -> Any:
        """The batch's answer; meanwhile, if it takes long, its running chunk's progress."""
        answer = asyncio.ensure_future(ref)
        try:
            while True:
                done, _ = await asyncio.wait((answer,), timeout=POLL)
                if done:
                    return answer.result()
                with contextlib.suppress(Exception):
                    now = await asyncio.wait_for(
                        asyncio.ensure_future(actor.handle.progress.remote()), POLL
                    )
                    if now is not None:
                        chunk_id, done_, total = now
                        for chunk in batch:
                            if chunk.id == chunk_id:
                                self.runner.runs.progress(run, chunk, done_, total)
        finally:
            if not answer.done():
                answer.cancel()

    def _requeue(self, run: Run, work: _RayRun, batch: list[Chunk], reason: str) -> None:
        """Chunks whose actor was lost run again (a new attempt), up to --max-attempts:
        first in line, here or, while the run's chunks are held (paused), with those."""
        runs = self.runner.runs
        back: list[Chunk] = []
        for chunk in batch:
            if chunk.state is not RUNNING:
                continue
            if chunk.attempt >= self.settings.max_attempts:
                runs.fail(
                    run,
                    chunk,
                    f"{reason} (attempt {chunk.attempt} of {self.settings.max_attempts})",
                )
                continue
            runs.requeue(run, chunk, reason)
            back.append(chunk)
        if not back or (self.hold is not None and self.hold(run, back)):
            return  # (a paused run's: they wait with its other chunks, for `submit`)
        work.queue.extendleft(reversed(back))
        work.more.set()
        work.changed.set()

    # -- ends

    async def release(self, run: Run, cancel: bool) -> None:
        work: _RayRun | None = run.sched
        if work is None:
            return
        work.closing = True
        work.more.set()
        work.changed.set()
        if cancel:
            work.queue.clear()
        tasks = [t for t in (work.keeper, *work.lanes) if t is not None]
        for task in tasks:
            if cancel or task not in work.busy_lanes:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._end_actors(work)
        self._runs.discard(run)

    async def _end_actors(self, work: _RayRun) -> None:
        actors, work.actors = work.actors, []
        for actor in actors:
            actor.dead = True
        if not actors:
            return
        ends = [asyncio.ensure_future(a.handle.teardown.remote()) for a in actors]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*ends, return_exceptions=True), 10)
        for actor in actors:
            _kill(actor.handle)

    def running_tasks(self) -> set[asyncio.Task[Any]]:
        return {task for run in self._runs for task in run.sched.busy_lanes}

    async def stop_dispatching(self) -> list[tuple[Run, Chunk]]:
        self.closing = True
        left: list[tuple[Run, Chunk]] = []
        idle: list[asyncio.Task[None]] = []
        for run in self._runs:
            work: _RayRun = run.sched
            for task in (work.keeper, *work.lanes):
                if task is not None and task not in work.busy_lanes:
                    task.cancel()
                    idle.append(task)
            left.extend((run, chunk) for chunk in work.queue)
            work.queue.clear()
        await asyncio.gather(*idle, return_exceptions=True)
        return left

    async def close(self) -> None:
        await super().close()
        await asyncio.gather(*self._ending, return_exceptions=True)
        await asyncio.to_thread(self.runtime.stop)


def _kill(handle: Any) -> None:
    with contextlib.suppress(Exception):
        import_ray().kill(handle, no_restart=True)
