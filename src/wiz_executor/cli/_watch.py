"""`wiz watch`: a run's live progress, and that of every run downstream of it, until all
have ended; or the runs of a pipeline launch (`--pipeline FILE`)."""

from __future__ import annotations

import json as jsonlib
import ssl
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..api import Run, State
from ..client import AsyncClient, Event
from ..client._events import describe
from ..errors import InvalidInput
from ..pipelines import Pipeline, load_pipeline, run_id_for
from ._common import (
    DEFAULT,
    EXIT_API_ERROR,
    EXIT_RUN_ERRORED,
    EXIT_USAGE,
    CaCertsOption,
    JsonOption,
    TokenOption,
    UrlOption,
    api_errors,
    fail,
    stderr,
    stdout,
    trust,
)
from ._follow_runs import Followed, RunFollower
from ._progress import bar, counts_text, eta_text, rate_text, render_run, state_text

MAX_FAILURES = 10
"""Failed chunks listed per ERRORED run in the final report."""


def watch(
    proc: Annotated[
        str | None, typer.Argument(metavar="PROC", help="Processor ID, e.g. noop.")
    ] = None,
    run: Annotated[str | None, typer.Argument(metavar="RUN", help="Run ID.")] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.yaml",
            help="Instead of PROC RUN: the runs of a launch of this pipeline on --url.",
        ),
    ] = None,
    launch: Annotated[
        str | None,
        typer.Option(
            metavar="SUFFIX",
            help="With --pipeline: which launch (the run IDs' last part), when there are several.",
        ),
    ] = None,
    downstream: Annotated[
        bool,
        typer.Option(
            "--downstream/--no-downstream",
            metavar="",
            help="Follow the runs downstream of the run too (from its DownstreamLocations).",
        ),
    ] = True,
    downstream_token: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST:PORT=TOKEN",
            help="The token of another executor a downstream run is on (repeatable); "
            "--token goes to --url's executor only.",
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after this many seconds.")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Follow a run live, and every run reachable downstream of it (on this executor or
    another), until all have ended; exit 3 if any ends ERRORED, 1 if one could not be
    followed.

    With --json, print one JSON object per line: each event (its type in "event"),
    then each run as it ends as {"event": "final", ...}."""
    if (pipeline is None) == (proc is None or run is None) or (pipeline and proc):
        fail("give either PROC RUN or --pipeline FILE", EXIT_USAGE)
    tokens = dict(_token(t) for t in downstream_token or ())
    verify = trust(ssl_ca_certs)
    follower = RunFollower(
        url,
        token,
        verify,
        tokens=tokens,
        downstream=downstream,
        on_event=_print_event if json else None,
        on_end=_print_final if json else None,
        failures=0 if json else MAX_FAILURES,
    )
    with api_errors(url):
        if pipeline is not None:
            roots = anyio.run(_launch_runs, _load(pipeline), launch, url, token, verify)
        else:
            roots = [(str(proc), str(run))]
        live = Live(
            console=stderr(), get_renderable=_Display(follower).render, refresh_per_second=8
        )
        try:
            with nullcontext() if json else live:
                followed = anyio.run(_follow, follower, roots, timeout)
        except TimeoutError:
            waiting = [
                f.name
                for f in follower.followed.values()
                if not f.tracker.finished and not f.problem
            ]
            fail(f"did not finish within {timeout:g} s: {', '.join(waiting) or 'nothing left'}")
    if not json:
        _print_report(followed)
    if any(f.errored for f in followed):
        raise typer.Exit(EXIT_RUN_ERRORED)
    if any(f.problem for f in followed):
        raise typer.Exit(EXIT_API_ERROR)


async def _follow(
    follower: RunFollower,
    roots: list[tuple[str, str]],
    timeout: float | None,  # noqa: ASYNC109 (one deadline for the whole watch)
) -> list[Followed]:
    with anyio.fail_after(timeout):
        return await follower.run(roots)


def _token(text: str) -> tuple[str, str]:
    host, sep, value = text.partition("=")
    if not (sep and host and value):
        fail(f"--downstream-token {text!r}: expected HOST:PORT=TOKEN", EXIT_USAGE)
    return host, value


def _load(path: Path) -> Pipeline:
    try:
        return load_pipeline(path)
    except InvalidInput as exc:
        fail(exc.message, EXIT_USAGE)


async def _launch_runs(
    pipeline: Pipeline, launch: str | None, url: str, token: str | None, verify: ssl.SSLContext
) -> list[tuple[str, str]]:
    """The runs of one launch of `pipeline` on the executor: every node's run, named
    `<pipeline>-<node>-<suffix>` by `wiz pipeline run`. The launch is `launch`, or the
    only one found there, or the only one still unfinished among several."""
    first = pipeline.first[0]
    prefix = run_id_for(pipeline.name, first.name, "")
    async with AsyncClient(url, token=token, verify=verify) as client:
        found = {
            r.RunID[len(prefix) :]: r
            for r in await client.runs(first.proc_id)
            if r.RunID.startswith(prefix) and "-" not in r.RunID[len(prefix) :]
        }
    found = {suffix: r for suffix, r in found.items() if suffix}
    if launch is None:
        if not found:
            fail(
                f"no launch of pipeline {pipeline.name} on {url} (no run {prefix}SUFFIX "
                f"of processor {first.proc_id})"
            )
        open_ = [s for s, r in found.items() if r.CurrentState not in _ENDED]
        if len(found) == 1:
            launch = next(iter(found))
        elif len(open_) == 1:
            launch = open_[0]
        else:
            listed = ", ".join(f"{s} ({r.CurrentState.value})" for s, r in found.items())
            fail(
                f"{len(found)} launches of pipeline {pipeline.name} on {url}: {listed}; "
                "choose one with --launch SUFFIX"
            )
    elif launch not in found:
        fail(f"no launch {launch!r} of pipeline {pipeline.name} on {url}")
    return [(n.proc_id, run_id_for(pipeline.name, n.name, launch)) for n in pipeline.nodes.values()]


_ENDED = (State.SUCCEEDED, State.ERRORED)


class _Display:
    """One row per run, as the runs are found; `Live` pulls `render` at its own pace."""

    def __init__(self, follower: RunFollower) -> None:
        self.follower = follower

    def render(self) -> RenderableType:
        followed = list(self.follower.followed.values())
        if len(followed) == 1 and not followed[0].problem:
            return render_run(followed[0].tracker)  # one run: its bar and errors, as always
        table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
        for column in ("run", "progress", "state", "chunks", "chunks/s", "ETA"):
            table.add_column(column)
        for f in followed:
            t = f.tracker
            name = Text(f.name, style="bold", overflow="fold")
            if t.problem:
                table.add_row(name, "", Text("not followed", style="red"), Text(t.problem))
                continue
            table.add_row(
                name,
                bar(t, 24),
                state_text(t.state),
                counts_text(t),
                rate_text(t.rate),
                eta_text(t.eta, t.state),
            )
        errors = [
            (f.name, chunk, error) for f in followed for chunk, error in f.tracker.last_errors(5)
        ][-5:]
        if not errors:
            return table
        failed = Table(title="failed chunks", title_justify="left", show_edge=False)
        for column in ("run", "chunk", "error"):
            failed.add_column(column)
        for run_name, chunk, error in errors:
            failed.add_row(run_name, chunk, Text(error, style="red"))
        return Group(table, failed)


def _print_report(followed: list[Followed]) -> None:
    """A line per run: how it ended and its counts, or why it could not be followed;
    the failed chunks of ERRORED runs."""
    out = stdout()
    for f in followed:
        if f.problem:
            out.print(f"{f.name} not followed: {f.problem}", markup=False)
            continue
        final = f.final
        assert final is not None  # followed to its end
        c = final.ChunkCounts
        counts = f": {c.SUCCEEDED} succeeded, {c.FAILED} failed" if c else ""
        out.print(f"{f.name} {final.CurrentState.value}{counts}", markup=False)
        for line in f.failures:
            out.print(line, markup=False)


def _one_line(value: object) -> str:
    return jsonlib.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _where(f: Followed) -> dict[str, str]:
    return {"URL": f.base_url} if f.other_executor else {}


def _print_event(f: Followed, event: Event) -> None:
    typer.echo(_one_line({**describe(event), **_where(f)}))


def _print_final(f: Followed) -> None:
    if f.problem:
        line = {
            "event": "not-followed",
            "ProcID": f.proc_id,
            "RunID": f.run_id,
            "URL": f.base_url,
            "Error": f.problem,
        }
        typer.echo(_one_line(line))
    elif isinstance(f.final, Run):
        typer.echo(_one_line({"event": "final", **f.final.model_dump(mode="json"), **_where(f)}))
