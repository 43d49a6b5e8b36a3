"""`wiz why PROC RUN`: why a run's chunks wait, how many more it takes, and since when
its running chunks run (the slow ones marked). One call on `Client.why`, printed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from ..api import Data
from ..client import RunWhy
from ._common import (
    DEFAULT,
    CaCertsOption,
    JsonOption,
    ProcArg,
    RunArg,
    TokenOption,
    UrlOption,
    connected,
    print_json,
    stdout,
)
from ._progress import state_text


def why(
    proc: ProcArg,
    run: RunArg,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="RUNNING chunks to show at most.")
    ] = 20,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Say why a run's chunks wait, how many more it takes now, and which are running."""
    with connected(url, token, ssl_ca_certs) as wiz:
        found = wiz.why(proc, run, limit)
    if json:
        return print_json({"Run": found.run, "Running": found.running})
    stdout().print(render_why(proc, found))


def render_why(proc: str, found: RunWhy, now: datetime | None = None) -> Table:
    """The report as a grid: the run's state and counts, the reason, the free room, and
    one line per RUNNING chunk (for how long, its progress, SLOW when it is)."""
    r = found.run
    now = now or datetime.now(UTC)
    table = Table.grid(padding=(0, 2))
    table.add_row("run", f"{proc}/{r.RunID}")
    table.add_row("state", state_text(r.CurrentState))
    if r.ChunkCounts is not None:
        c = r.ChunkCounts
        table.add_row(
            "chunks",
            f"waiting {c.WAITING}  running {c.RUNNING}  ok {c.SUCCEEDED}  failed {c.FAILED}",
        )
    if r.Waiting is not None:
        w = r.Waiting
        table.add_row("waiting", f"[bold]{w.Reason.value}[/]: {w.Detail}")
        table.add_row("since", f"{w.Since} ({_ago(w.Since, now)})")
    else:
        table.add_row("waiting", "nothing waits")
    if r.FreeRoom is not None:
        table.add_row("free room", f"{r.FreeRoom} more chunks accepted now")
    for chunk in found.running:
        table.add_row("running", _running(chunk, now))
    return table


def _running(chunk: Data, now: datetime) -> str:
    parts = [chunk.ChunkID]
    if chunk.RunningSince:
        parts.append(f"for {_ago(chunk.RunningSince, now, suffix='')}")
    if chunk.Progress is not None:
        total = "?" if chunk.Progress.Total is None else str(chunk.Progress.Total)
        parts.append(f"progress {chunk.Progress.Done}/{total}")
    if chunk.Slow:
        parts.append("[bold red]SLOW[/] (past half its ChunkTimeout)")
    return "  ".join(parts)


def _ago(stamp: str, now: datetime, suffix: str = " ago") -> str:
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max((now - then).total_seconds(), 0.0)
    if seconds < 60:
        text = f"{seconds:.1f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.1f} min"
    else:
        text = f"{seconds / 3600:.1f} h"
    return text + suffix
