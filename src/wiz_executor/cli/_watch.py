"""`wiz watch`: a run's live progress from its event stream, until it ends."""

from __future__ import annotations

import json as jsonlib
from contextlib import closing
from typing import Annotated

import typer
from rich.live import Live

from ..api import Run, State
from ..client import Client
from ..client._events import describe
from ._common import (
    DEFAULT,
    EXIT_RUN_ERRORED,
    CaCertsOption,
    JsonOption,
    ProcArg,
    RunArg,
    TokenOption,
    UrlOption,
    connected,
    stderr,
    stdout,
)
from ._progress import RunTracker, render_run


def watch(
    proc: ProcArg,
    run: RunArg,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after this many seconds.")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Follow a run live until it ends; exit 3 if it ends ERRORED.

    With --json, print one JSON object per line: each event (its type in "event"),
    then the final run as {"event": "final", ...}."""
    tracker = RunTracker(proc, run)
    final: Run | None = None
    failures: list[str] = []
    with connected(url, token, ssl_ca_certs) as wiz:
        if json:
            with closing(wiz.follow(proc, run, timeout)) as items:
                for item in items:
                    if isinstance(item, Run):
                        final = item
                    else:
                        typer.echo(_one_line(describe(item)))
        else:
            with (
                Live(
                    console=stderr(),
                    get_renderable=lambda: render_run(tracker),
                    refresh_per_second=8,
                ),
                closing(wiz.follow(proc, run, timeout)) as items,
            ):
                for item in items:
                    tracker.update(item)
                    if isinstance(item, Run):
                        final = item
        if final is not None and final.CurrentState is State.ERRORED and not json:
            failures = _failures(wiz, proc, run)
    assert final is not None  # follow() ends with the final Run
    if json:
        typer.echo(_one_line({"event": "final", **final.model_dump(mode="json")}))
    else:
        c = final.ChunkCounts
        counts = f": {c.SUCCEEDED} succeeded, {c.FAILED} failed" if c else ""
        stdout().print(f"{proc}/{run} {final.CurrentState.value}{counts}")
        for line in failures:
            stdout().print(line, markup=False)
    if final.CurrentState is State.ERRORED:
        raise typer.Exit(EXIT_RUN_ERRORED)


def _one_line(value: object) -> str:
    return jsonlib.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _failures(wiz: Client, proc: str, run: str, limit: int = 10) -> list[str]:
    """Why an ERRORED run failed: its failed chunks and undelivered outputs."""
    spec = wiz.data(proc, run)
    lines = [f"  {c.ChunkID}: {c.Error or 'failed'}" for c in spec.In if c.State.value == "FAILED"]
    lines += [
        f"  {o.ChunkID}: not delivered downstream: {o.DeliveryError}"
        for o in spec.Out
        if o.DeliveryError
    ]
    if len(lines) > limit:
        lines = [*lines[:limit], f"  … and {len(lines) - limit} more (wiz data {proc} {run})"]
    return lines
