"""`wiz pipeline run FILE.yaml`: run a pipeline, live, on an executor or an embedded one."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Annotated, Any

import anyio
import typer
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..api import Data, DataFormat, Run, State
from ..client import AsyncClient, Event
from ..errors import InvalidInput
from ..pipelines import (
    EmbeddedExecutor,
    NodeRun,
    Pipeline,
    PipelineResult,
    PipelineRunner,
    Update,
    load_pipeline,
)
from ..settings import Settings
from ._common import (
    EXIT_RUN_ERRORED,
    EXIT_USAGE,
    CaCertsOption,
    JsonOption,
    TokenOption,
    api_errors,
    compact,
    fail,
    flag,
    print_json,
    stderr,
    stdout,
    trust,
)
from ._plan import dry_run, host_of, validate
from ._progress import RunTracker, bar, counts_text, state_text

pipeline_app = typer.Typer(
    name="pipeline",
    help="Run pipelines: graphs of processor runs described in YAML.",
    no_args_is_help=True,
)


@pipeline_app.callback()
def _pipeline() -> None:
    """Run pipelines: graphs of processor runs described in YAML."""


pipeline_app.command("validate")(validate)


@pipeline_app.command("run")
def run(
    file: Annotated[Path, typer.Argument(metavar="FILE.yaml", help="The pipeline file.")],
    url: Annotated[
        str | None,
        typer.Option(
            envvar="WIZ_URL",
            show_envvar=True,
            help="Executor to run on; without it, an embedded one serves for the duration.",
        ),
    ] = None,
    token: TokenOption = None,
    hostname: Annotated[
        str | None,
        typer.Option(
            help="How the executor reaches itself, for DownstreamLocations "
            "(default: the host:port of --url)."
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after this many seconds.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Chunks per AddData request.")] = 500,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data directory of the embedded executor (default: a temporary one)."),
    ] = None,
    ssl_ca_certs: CaCertsOption = None,
    json: JsonOption = False,
    dry: Annotated[
        bool,
        flag(
            "--dry-run",
            "Check the file and print the runs and configurations it would create; "
            "create nothing and contact no executor.",
        ),
    ] = False,
) -> None:
    """Create a run per node, wire them, send the data, and follow every node to the end.

    Exits 3 if any node ends ERRORED."""
    if dry:
        return dry_run(file, url, hostname, json)
    try:
        pipeline = load_pipeline(file)
    except InvalidInput as exc:
        fail(exc.message, EXIT_USAGE)
    verify = trust(ssl_ca_certs)
    with ExitStack() as stack:
        embedded = url is None
        if url is None:
            if data_dir is None:
                data_dir = Path(stack.enter_context(TemporaryDirectory(prefix="wiz-pipeline-")))
            # It lives only as long as this command: when the pipeline has ended (or
            # failed, or timed out) no chunk is worth a long shutdown grace.
            # It trusts the same CAs, for its get and scrape sources. Ephemeral: it lives
            # for this command only, so a journal would only bring back the runs of an
            # earlier `pipeline run` on the same --data-dir (same run IDs: no-ops).
            settings = Settings(
                data_dir=data_dir, shutdown_grace=1.0, ssl_ca_certs=ssl_ca_certs, ephemeral=True
            )
            stack.enter_context(_quiet_run_log())
            executor = stack.enter_context(EmbeddedExecutor(settings))
            url, host = executor.url, executor.hostname
            token = ""  # it has none to ask for
        else:
            host = hostname or host_of(url)
        display = _Display(pipeline)
        live = Live(
            console=stderr(), get_renderable=display.render, refresh_per_second=8, transient=json
        )
        with api_errors(url), live:
            try:
                result = anyio.run(
                    _run, pipeline, url, token, host, batch_size, display.update, timeout, verify
                )
            except TimeoutError:
                fail(f"pipeline {pipeline.name} did not finish within {timeout:g} s")
    if json:
        print_json(_as_json(result, embedded))
    else:
        _print_result(result, embedded)
    if not result.succeeded:
        raise typer.Exit(EXIT_RUN_ERRORED)


async def _run(
    pipeline: Pipeline,
    url: str,
    token: str | None,
    hostname: str,
    batch_size: int,
    on_update: Update,
    deadline: float | None,
    verify: ssl.SSLContext,
) -> PipelineResult:
    async with AsyncClient(url, token=token, verify=verify) as client:
        runner = PipelineRunner(
            pipeline, client, hostname, batch_size=batch_size, on_update=on_update
        )
        return await runner.run(deadline)


@contextmanager
def _quiet_run_log() -> Iterator[None]:
    """The embedded executor's run log (a WARNING per failed chunk) stays out of the
    live display: the display and the final report say which chunks failed."""
    logger = logging.getLogger("wiz_executor.runs")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Display:
    """Every node's progress, fed by the runner's updates; `Live` pulls `render` at
    its own pace, so a burst of events costs no redraws."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.trackers: dict[str, RunTracker] = {}

    def update(self, nr: NodeRun, item: Run | Event) -> None:
        tracker = self.trackers.get(nr.node.name)
        if tracker is None:
            tracker = self.trackers[nr.node.name] = RunTracker(nr.proc_id, nr.run_id)
        tracker.update(item)

    def render(self) -> RenderableType:
        table = Table(title=f"pipeline {self.pipeline.name}", title_justify="left", box=box.SIMPLE)
        for column in ("node", "run", "progress", "state", "chunks"):
            table.add_column(column)
        for node in self.pipeline.nodes.values():
            tracker = self.trackers.get(node.name)
            if tracker is None:
                table.add_row(node.name, node.proc_id, "", state_text(None), "")
                continue
            table.add_row(
                node.name,
                Text(f"{tracker.proc_id}/{tracker.run_id}", overflow="fold"),
                bar(tracker, 16),
                state_text(tracker.state),
                counts_text(tracker),
            )
        return table


def _location(chunk: Data) -> str:
    if chunk.Format is DataFormat.FILESYSTEM_REF:
        ref = chunk.FilesystemReference
        return f"{ref.Driver}:{ref.Location}" if ref.Driver else ref.Location
    return compact(chunk.RawData)


def _print_result(result: PipelineResult, embedded: bool) -> None:
    """The pipeline's state, then per final node where its outputs are, and each output."""
    state = State.SUCCEEDED if result.succeeded else State.ERRORED
    parts: list[RenderableType] = [
        Text.assemble(
            f"pipeline {result.pipeline.name} ", state_text(state), f" ({len(result.runs)} runs)"
        )
    ]
    for nr in result.runs.values():
        if nr.state is not State.SUCCEEDED:
            parts.append(Text(f"  {nr.node.name}: {nr.proc_id}/{nr.run_id} ended {_state(nr)}"))
    for name, chunks in result.outputs.items():
        nr = result.runs[name]
        parts.append(
            Text.assemble(
                f"final node {name}: ",
                (f"{nr.proc_id}/{nr.run_id}", "bold"),
                " ",
                state_text(nr.state),
                f", {len(chunks)} outputs",
            )
        )
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        for chunk in chunks:
            table.add_row("  " + chunk.ChunkID, chunk.State.value, _location(chunk))
        parts.append(table)
    if embedded:
        parts.append(Text("(the embedded executor has stopped; use --url to keep the runs)", "dim"))
    else:
        parts.append(Text(f"read them at {result.url}/processors/PROC/runs/RUN/data", "dim"))
    stdout().print(Group(*parts))


def _state(nr: NodeRun) -> str:
    return nr.state.value if nr.state is not None else "unknown"


def _as_json(result: PipelineResult, embedded: bool) -> dict[str, Any]:
    return {
        "Pipeline": result.pipeline.name,
        "URL": result.url,
        "Embedded": embedded,
        "State": (State.SUCCEEDED if result.succeeded else State.ERRORED).value,
        "Nodes": [
            {
                "Name": nr.node.name,
                "ProcID": nr.proc_id,
                "RunID": nr.run_id,
                "State": _state(nr),
                "Upstream": nr.node.upstream,
                "Downstream": nr.node.downstream,
                "ChunkCounts": (
                    nr.run.ChunkCounts.model_dump()
                    if nr.run is not None and nr.run.ChunkCounts is not None
                    else None
                ),
            }
            for nr in result.runs.values()
        ],
        "Outputs": [
            {
                "Node": name,
                "ProcID": result.runs[name].proc_id,
                "RunID": result.runs[name].run_id,
                "Chunks": [c.model_dump(mode="json") for c in chunks],
            }
            for name, chunks in result.outputs.items()
        ],
    }
