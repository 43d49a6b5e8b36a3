"""The verbs that change a running run or the executor live: pause, resume, set, limits.

Each is one call on `wiz_executor.client.Client` and a line (or `--json`), as the other
client verbs are.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..api import Run
from ._common import (
    DEFAULT,
    EXIT_USAGE,
    CaCertsOption,
    JsonOption,
    ProcArg,
    RunArg,
    TokenOption,
    UrlOption,
    WorkModelName,
    connected,
    fail,
    print_json,
    print_warnings,
    stdout,
)


def _limits_line(r: Run) -> str:
    ec = r.Configuration.ExecutorConfig
    parts = [f"max workers {ec.MaxWorkers or 'executor default'}"]
    if ec.ChunkTimeout:
        parts.append(f"chunk timeout {ec.ChunkTimeout:g} s")
    if ec.WorkModel is not None:
        parts.append(f"work model {ec.WorkModel.value}")
    return ", ".join(parts)


def pause(
    proc: ProcArg,
    run: RunArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Pause a run: none of its chunks starts until `wiz resume` (running ones finish;
    it still takes chunks). Kept across a restart of the executor."""
    with connected(url, token, ssl_ca_certs) as wiz:
        paused = wiz.pause(proc, run)
    if json:
        return print_json(paused)
    stdout().print(f"paused {proc}/{paused.RunID}: {paused.CurrentState.value}")


def resume(
    proc: ProcArg,
    run: RunArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Resume a paused run: its waiting chunks start again."""
    with connected(url, token, ssl_ca_certs) as wiz:
        resumed = wiz.resume(proc, run)
    if json:
        return print_json(resumed)
    stdout().print(f"resumed {proc}/{resumed.RunID}: {resumed.CurrentState.value}")


def set_run(
    proc: ProcArg,
    run: RunArg,
    max_workers: Annotated[
        int | None, typer.Option(min=0, help="Chunks processed at once; 0 = default.")
    ] = None,
    chunk_timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds a chunk started from now on may take; 0 = default."),
    ] = None,
    work_model: Annotated[
        WorkModelName | None,
        typer.Option(help="Move the run to this work model (after its chunks in flight)."),
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Change a running run live: its MaxWorkers, ChunkTimeout or work model. No chunk
    is lost or run twice; the options not given stay as they are."""
    if max_workers is None and chunk_timeout is None and work_model is None:
        fail("give at least one of --max-workers, --chunk-timeout, --work-model", EXIT_USAGE)
    with connected(url, token, ssl_ca_certs) as wiz:
        changed = wiz.change_config(
            proc,
            run,
            max_workers=max_workers,
            chunk_timeout=chunk_timeout,
            work_model=None if work_model is None else work_model.value,
        )
    print_warnings(changed.Warnings)
    if json:
        return print_json(changed)
    stdout().print(f"changed {proc}/{changed.RunID}: {_limits_line(changed)}")


def limits(
    max_workers: Annotated[
        int | None,
        typer.Option(min=1, help="Chunks and live instances at once, across all runs."),
    ] = None,
    max_pending: Annotated[
        int | None, typer.Option(min=1, help="Waiting chunks held before AddData gets 429.")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Show the executor-wide limits, or change them live with the options (until the
    executor restarts: its flags are the operator's configuration)."""
    with connected(url, token, ssl_ca_certs) as wiz:
        if max_workers is None and max_pending is None:
            now = wiz.executor_limits()
        else:
            now = wiz.set_executor_limits(max_workers=max_workers, max_pending=max_pending)
    if json:
        return print_json(now)
    stdout().print(f"max workers {now.MaxWorkers}, max pending {now.MaxPending}")
