"""Running a pipeline on an executor: one run per node, wired with DownstreamLocations.

The executor does the data flow itself: every node's run sends each finished output to
the runs of its downstream nodes. The runner only sets that up and decides when each
run's input is complete:

- runs are configured downstream-first, so every location exists before anything is
  sent to it;
- the first nodes get the pipeline's data (NumChunks known), the others NumChunks 0,
  since how many chunks reach them is not known in advance;
- a node's input is complete when every upstream node has finished. A run finishes only
  once all its outputs have been delivered downstream, so at that moment nothing more
  can arrive from it; a join (a node fed by parallel branches) is closed only when the
  last of its branches has finished, so the slower branch's outputs still get in.
  An upstream that ends ERRORED still closes its downstream (which then completes with
  what did arrive), so a failure ends the pipeline instead of hanging it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field

import anyio

from ..api import (
    Configuration,
    Data,
    DownstreamDataLocation,
    ExecutorConfig,
    ExpectedData,
    Run,
    State,
)
from ..client import AsyncClient, Event
from ..errors import InvalidInput, WizError
from ._check import graph_problems
from ._spec import Node, Pipeline, run_id_for


@dataclass(frozen=True)
class PlannedRun:
    """A run a launch of the pipeline creates: its node, IDs and configuration."""

    node: Node
    proc_id: str
    run_id: str
    configuration: Configuration
    chunks: int
    """Chunks of the pipeline's data sent to it (first nodes; 0 for the others)."""


def plan_runs(pipeline: Pipeline, hostname: str, suffix: str) -> list[PlannedRun]:
    """The run of each node (in the pipeline's order) with the configuration it is
    given: first nodes expect the pipeline's data, the others NumChunks 0; every run
    sends downstream to its downstream nodes' runs at `hostname`. What the runner
    creates, and what `wiz pipeline run --dry-run` prints."""
    run_ids = {name: run_id_for(pipeline.name, name, suffix) for name in pipeline.nodes}
    plan = []
    for node in pipeline.nodes.values():
        locations = [
            DownstreamDataLocation(
                Hostname=hostname, ProcID=pipeline.nodes[d].proc_id, RunID=run_ids[d]
            )
            for d in node.downstream
        ]
        chunks = len(pipeline.data) if node.first else 0
        configuration = Configuration(
            ExpectedData=ExpectedData(NumChunks=chunks),
            ExecutorConfig=ExecutorConfig.model_validate(
                {
                    **node.executor,
                    "SendDownstream": bool(locations),
                    "DownstreamLocations": locations or None,
                }
            ),
            Processor=node.configuration,
        )
        plan.append(PlannedRun(node, node.proc_id, run_ids[node.name], configuration, chunks))
    return plan


@dataclass
class NodeRun:
    """A node and its run on the executor, with the latest state seen."""

    node: Node
    proc_id: str
    run_id: str
    run: Run | None = None
    sent: int = 0
    """Chunks of the pipeline's data sent to this run (first nodes only)."""

    @property
    def state(self) -> State | None:
        return None if self.run is None else self.run.CurrentState


@dataclass
class PipelineResult:
    pipeline: Pipeline
    url: str
    runs: dict[str, NodeRun]
    outputs: dict[str, list[Data]] = field(default_factory=dict)
    """The output chunks of each final node, by node name."""

    @property
    def succeeded(self) -> bool:
        return all(nr.state is State.SUCCEEDED for nr in self.runs.values())


Update = Callable[[NodeRun, Run | Event], None]
"""Told of every run snapshot and event of every node, for a live display."""


class PipelineRunner:
    def __init__(
        self,
        pipeline: Pipeline,
        client: AsyncClient,
        hostname: str,
        *,
        suffix: str | None = None,
        batch_size: int = 500,
        on_update: Update | None = None,
    ) -> None:
        """`hostname` is how the executor reaches itself (DownstreamLocations[].Hostname).
        A graph that cannot run (a cycle, a missing node: `graph_problems`) is refused
        with InvalidInput, before anything is created."""
        problems = graph_problems(pipeline)
        if problems:
            raise InvalidInput(f"pipeline {pipeline.name}: {'; '.join(problems)}")
        self.pipeline = pipeline
        self.client = client
        self.hostname = hostname
        self.batch_size = max(batch_size, 1)
        self.on_update = on_update
        self.suffix = suffix or secrets.token_hex(3)
        self.plan = {p.node.name: p for p in plan_runs(pipeline, hostname, self.suffix)}
        self.runs = {name: NodeRun(p.node, p.proc_id, p.run_id) for name, p in self.plan.items()}

    async def run(self, timeout: float | None = None) -> PipelineResult:  # noqa: ASYNC109
        """Run the pipeline to the end; TimeoutError after `timeout` seconds."""
        with anyio.fail_after(timeout):
            await self._check_processors()
            await self._configure()
            finished = {name: anyio.Event() for name in self.runs}
            try:
                async with anyio.create_task_group() as tg:
                    for nr in self.runs.values():
                        tg.start_soon(self._follow, nr, finished[nr.node.name])
                        if not nr.node.first:
                            upstream = [finished[name] for name in nr.node.upstream]
                            tg.start_soon(self._close_after, nr, upstream)
                    tg.start_soon(self._feed)
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
            result = PipelineResult(self.pipeline, self.client.base_url, self.runs)
            for node in self.pipeline.final:
                nr = self.runs[node.name]
                result.outputs[node.name] = (await self.client.data(nr.proc_id, nr.run_id)).Out
        return result

    async def _check_processors(self) -> None:
        """Fail before creating anything if a processor is not served (ProcessorNotFound)."""
        for proc_id in dict.fromkeys(nr.proc_id for nr in self.runs.values()):
            await self.client.processor(proc_id)

    async def _configure(self) -> None:
        for nr in reversed(self.runs.values()):
            configuration = self.plan[nr.node.name].configuration
            with _about(nr):
                nr.run = await self.client.configure(nr.proc_id, nr.run_id, configuration)
            self._notify(nr, nr.run)

    async def _feed(self) -> None:
        """Send the pipeline's data to the first nodes, in batches, then close their input."""
        data = self.pipeline.data
        for nr in self.runs.values():
            if not nr.node.first:
                continue
            with _about(nr):
                for start in range(0, len(data), self.batch_size):
                    batch = data[start : start + self.batch_size]
                    await self.client.add_data(nr.proc_id, nr.run_id, batch)
                    nr.sent += len(batch)
                await self.client.end_of_input(nr.proc_id, nr.run_id)

    async def _follow(self, nr: NodeRun, finished: anyio.Event) -> None:
        async with aclosing(self.client.follow(nr.proc_id, nr.run_id)) as items:
            async for item in items:
                if isinstance(item, Run):
                    nr.run = item
                self._notify(nr, item)
        finished.set()

    async def _close_after(self, nr: NodeRun, upstream: list[anyio.Event]) -> None:
        for event in upstream:
            await event.wait()
        await self.client.end_of_input(nr.proc_id, nr.run_id)

    def _notify(self, nr: NodeRun, item: Run | Event) -> None:
        if self.on_update is not None:
            self.on_update(nr, item)


@contextmanager
def _about(nr: NodeRun) -> Iterator[None]:
    """Name the node in an API error, so a failing pipeline says where it failed."""
    try:
        yield
    except WizError as exc:
        exc.message = f"node {nr.node.name!r} ({nr.proc_id}/{nr.run_id}): {exc.message}"
        exc.args = (exc.message,)
        raise


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (a failing task cancels its siblings)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        return exc
    return group
