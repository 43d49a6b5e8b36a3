"""The client verbs that read or change one thing: processors, runs, run, configure,
end, data, delete. Each is a call on `wiz_executor.client.Client` and a table (or `--json`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..api import Configuration, Data, DataChunkState, DataSpec, Run, unknown_fields
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
    compact,
    connected,
    fail,
    load_json_text,
    print_json,
    print_warnings,
    stderr,
    stdout,
)
from ._progress import NOT_KNOWN, duration_text, eta_text, rate_text, state_text


def processors(
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """List the processors the executor serves."""
    with connected(url, token, ssl_ca_certs) as wiz:
        found = wiz.processors()
    if json:
        return print_json(found)
    table = Table("ProcID", "Name", "Version")
    for p in found:
        table.add_row(p.ProcID, p.Name, p.Version)
    stdout().print(table)


def runs(
    proc: ProcArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """List the runs of a processor."""
    with connected(url, token, ssl_ca_certs) as wiz:
        found = wiz.runs(proc)
    if json:
        return print_json(found)
    table = Table(
        "RunID", "State", "NumChunks", "waiting", "running", "ok", "failed", "chunks/s", "ETA"
    )
    for r in found:
        c = r.ChunkCounts
        counts = [c.WAITING, c.RUNNING, c.SUCCEEDED, c.FAILED] if c else ["", "", "", ""]
        table.add_row(
            r.RunID,
            state_text(r.CurrentState),
            str(r.Configuration.ExpectedData.NumChunks or "?"),
            *map(str, counts),
            rate_text(r.ChunksPerSecond),
            eta_text(r.EtaSeconds, r.CurrentState),
        )
    if not found:
        stdout().print(f"no runs of {proc}")
        return
    stdout().print(table)


def run(
    proc: ProcArg,
    run: RunArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Show one run: its state, chunk counts and configuration."""
    with connected(url, token, ssl_ca_certs) as wiz:
        found = wiz.run(proc, run)
    if json:
        return print_json(found)
    stdout().print(_run_table(proc, found))


def _run_table(proc: str, r: Run) -> Table:
    ec = r.Configuration.ExecutorConfig
    table = Table.grid(padding=(0, 2))
    table.add_row("run", f"{proc}/{r.RunID}")
    table.add_row("state", state_text(r.CurrentState))
    if r.ChunkCounts is not None:
        c = r.ChunkCounts
        table.add_row(
            "chunks",
            f"waiting {c.WAITING}  running {c.RUNNING}  ok {c.SUCCEEDED}  failed {c.FAILED}",
        )
    table.add_row("expected", str(r.Configuration.ExpectedData.NumChunks or "not known"))
    table.add_row("throughput", rate_text(r.ChunksPerSecond))
    table.add_row("ETA", eta_text(r.EtaSeconds, r.CurrentState))
    table.add_row("started", r.Started or NOT_KNOWN)
    table.add_row("ended", r.Ended or NOT_KNOWN)
    table.add_row("duration", duration_text(r.DurationSeconds))
    if r.InputClosed is not None:
        table.add_row("input closed", "yes" if r.InputClosed else "no")
    if r.Paused:
        table.add_row("paused", "yes (wiz resume starts its chunks again)")
    table.add_row("max workers", str(ec.MaxWorkers or "executor default"))
    if ec.WorkModel is not None:
        table.add_row("work model", ec.WorkModel.value)
    locations = (ec.DownstreamLocations or []) if ec.SendDownstream else []
    for loc in locations:
        table.add_row("downstream", f"{loc.Hostname} {loc.ProcID}/{loc.RunID}")
    table.add_row("processor config", compact(r.Configuration.Processor, 200))
    return table


def configure(
    proc: ProcArg,
    run: RunArg,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="A Configuration as JSON ('-' for stdin); flags override it."
        ),
    ] = None,
    num_chunks: Annotated[
        int | None, typer.Option(min=0, help="Chunks the run will get; 0 = not known.")
    ] = None,
    max_workers: Annotated[
        int | None, typer.Option(min=0, help="Chunks processed at once; 0 = default.")
    ] = None,
    work_model: Annotated[
        WorkModelName | None, typer.Option(help="How chunks get workers.")
    ] = None,
    chunk_timeout: Annotated[
        float | None, typer.Option(min=0, help="Seconds a chunk may take.")
    ] = None,
    processor_config: Annotated[
        str | None, typer.Option(help="The processor's own configuration, as JSON.")
    ] = None,
    downstream: Annotated[
        list[str] | None,
        typer.Option(help="Send outputs to HOST:PORT/PROC/RUN (repeatable)."),
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Create a run (the same configuration again is a no-op)."""
    base: dict[str, Any] = {}
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else _read(file)
        base = load_json_text(text, f"configuration file {file}")
        if not isinstance(base, dict):
            fail(f"configuration file {file} must hold a JSON object", EXIT_USAGE)
    expected = dict(base.get("ExpectedData") or {})
    executor = dict(base.get("ExecutorConfig") or {})
    if num_chunks is not None:
        expected["NumChunks"] = num_chunks
    if max_workers is not None:
        executor["MaxWorkers"] = max_workers
    if work_model is not None:
        executor["WorkModel"] = work_model.value.upper()
    if chunk_timeout is not None:
        executor["ChunkTimeout"] = chunk_timeout
    if downstream:
        executor["SendDownstream"] = True
        executor["DownstreamLocations"] = [_location(d) for d in downstream]
    document = {**base, "ExpectedData": expected, "ExecutorConfig": executor}
    if processor_config is not None:
        document["Processor"] = load_json_text(processor_config, "--processor-config")
    try:
        configuration = Configuration.model_validate(document)
    except ValueError as exc:
        fail(f"invalid configuration: {exc}", EXIT_USAGE)
    # The model drops what it does not know (a typo in the file): say so, since it is
    # not sent. The executor reports what it ignored itself, in the run's Warnings.
    for path in unknown_fields(Configuration, document):
        _warn(f"unknown field {path} in the configuration, not sent")
    with connected(url, token, ssl_ca_certs) as wiz:
        created = wiz.configure(proc, run, configuration)
    print_warnings(created.Warnings)
    if json:
        return print_json(created)
    stdout().print(f"configured {proc}/{created.RunID}: {created.CurrentState.value}")


def _warn(message: str) -> None:
    """A warning on stderr, so that `--json` output on stdout stays machine-readable."""
    stderr().print(f"warning: {message}", markup=False, soft_wrap=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)


def _location(text: str) -> dict[str, str]:
    host, _, rest = text.rpartition("/")
    host, _, proc = host.rpartition("/")
    if not (host and proc and rest):
        fail(f"--downstream {text!r}: expected HOST:PORT/PROC/RUN", EXIT_USAGE)
    return {"Hostname": host, "ProcID": proc, "RunID": rest}


PAGE_SIZE = 1000
"""Chunks `wiz data` reads per request: rows are printed a page at a time."""


def data(
    proc: ProcArg,
    run: RunArg,
    state: Annotated[
        DataChunkState | None, typer.Option(help="Only the chunks in this state.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many chunks.")] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Show a run's input chunks and their outputs, read and printed page by page."""
    page_size = min(PAGE_SIZE, limit) if limit else PAGE_SIZE
    inputs: list[Data] = []
    outputs: list[Data] = []
    shown = 0
    rows = _DataRows()
    with connected(url, token, ssl_ca_certs) as wiz:
        for page in wiz.iter_data(proc, run, state=state, page_size=page_size):
            room = len(page.In) if limit is None else limit - shown
            page_in, page_out = page.In[:room], page.Out[:room]
            if json:  # one document, as before paging: gathered, then printed
                inputs += page_in
                outputs += page_out
            elif page_in:
                typer.echo(rows.page(page_in, page_out), nl=False)
            shown += len(page_in)
            if limit is not None and shown >= limit:
                break
    if json:
        return print_json(DataSpec(In=inputs, Out=outputs))
    typer.echo(f"{shown} chunks" + (f" {state.value}" if state else ""))


class _DataRows:
    """A run's chunks as aligned text rows, printed a page at a time.

    Not a rich Table: it measures every cell of the whole table before printing any,
    which took seconds for 20,000 rows and printed nothing until the last page came.
    Columns widen as wider values arrive (never narrow), so pages line up.
    """

    HEADER = ("input", "state", "output", "result")

    def __init__(self) -> None:
        self.widths = [len(h) for h in self.HEADER[:3]]
        self.started = False

    def page(self, inputs: list[Data], outputs: list[Data]) -> str:
        by_input = {o.AssociatedChunkID: o for o in outputs}
        cells = [self._cells(chunk, by_input.get(chunk.ChunkID)) for chunk in inputs]
        for row in cells:
            for i in range(3):
                self.widths[i] = max(self.widths[i], len(row[i]))
        lines = [] if self.started else [self._line(self.HEADER)]
        self.started = True
        lines += [self._line(row) for row in cells]
        return "\n".join(lines) + "\n"

    def _line(self, row: tuple[str, str, str, str]) -> str:
        w = self.widths
        return f"{row[0]:<{w[0]}}  {row[1]:<{w[1]}}  {row[2]:<{w[2]}}  {row[3]}".rstrip()

    @staticmethod
    def _cells(chunk: Data, out: Data | None) -> tuple[str, str, str, str]:
        if out is None:
            result = ""
        elif out.Error:
            result = out.Error
        elif out.Format.value == "FILESYSTEM_REF":
            result = f"{out.FilesystemReference.Driver}:{out.FilesystemReference.Location}"
        else:
            result = compact(out.RawData)
        return chunk.ChunkID, chunk.State.value, chunk.AssociatedChunkID, result


def end(
    proc: ProcArg,
    run: RunArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Declare end of input: no more chunks will come, so the run completes once the
    chunks it holds have finished (for a run whose NumChunks is 0, the only way)."""
    with connected(url, token, ssl_ca_certs) as wiz:
        closed = wiz.end_of_input(proc, run)
    if json:
        return print_json(closed)
    stdout().print(
        f"end of input declared for {proc}/{closed.RunID}: {closed.CurrentState.value}, "
        f"{closed.Accepted} chunks held"
    )


def retry(
    proc: ProcArg,
    run: RunArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Retry what failed: queue the run's FAILED chunks again and resend its failed
    downstream deliveries (nothing, when nothing failed)."""
    with connected(url, token, ssl_ca_certs) as wiz:
        done = wiz.retry(proc, run)
    if json:
        return print_json(done)
    stdout().print(
        f"retried {proc}/{done.RunID}: {done.Chunks} chunks and {done.Deliveries} "
        f"deliveries queued again; the run is {done.CurrentState.value}"
    )


def cancel(
    proc: ProcArg,
    run: RunArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Stop a run early: declare end of input and fail its waiting chunks without
    running them (running ones finish). What it did is kept; `wiz retry` runs the
    cancelled chunks after all."""
    with connected(url, token, ssl_ca_certs) as wiz:
        done = wiz.cancel(proc, run)
    if json:
        return print_json(done)
    stdout().print(
        f"cancelled {proc}/{done.RunID}: {done.Cancelled} waiting chunks failed; the run "
        f"is {done.CurrentState.value}"
    )


def delete(
    proc: ProcArg,
    run: RunArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    json: JsonOption = False,
    ssl_ca_certs: CaCertsOption = None,
) -> None:
    """Cancel a run's unfinished chunks and forget the run."""
    with connected(url, token, ssl_ca_certs) as wiz:
        gone = wiz.delete(proc, run)
    if json:
        return print_json(gone)
    stdout().print(f"deleted {proc}/{gone.RunID} (it was {gone.CurrentState.value})")


def register(app: typer.Typer) -> None:
    """Add every client verb to the `wiz` app."""
    from ._control import limits, pause, resume, set_run
    from ._pipeline import pipeline_app
    from ._send import send
    from ._watch import watch
    from ._why import why

    verbs: list[tuple[str, Callable[..., None]]] = [
        ("processors", processors),
        ("runs", runs),
        ("run", run),
        ("configure", configure),
        ("send", send),
        ("end", end),
        ("watch", watch),
        ("why", why),
        ("data", data),
        ("retry", retry),
        ("cancel", cancel),
        ("pause", pause),
        ("resume", resume),
        ("set", set_run),
        ("limits", limits),
        ("delete", delete),
    ]
    for name, verb in verbs:
        app.command(name)(verb)
    app.add_typer(pipeline_app, name="pipeline")
