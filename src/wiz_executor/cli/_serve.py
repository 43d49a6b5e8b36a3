"""`wiz executor`: serve the Processor API until SIGINT or SIGTERM.

On a signal uvicorn stops accepting connections, ends the event streams and lets open
requests end; then the app's lifespan shuts the executor down in order (running chunks
get the grace period; with the durable journal the rest stay in it and run after the
restart, with `--ephemeral` they fail with a message saying why).

A journal that cannot be opened (damaged, not a journal, written by a newer version) is
checked before serving: its message (naming the file and what to do) and exit code 1,
never a traceback and never a silent fresh start.
"""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .._logs import configure_logging
from ..api import WorkModel
from ..errors import JournalError
from ..journal import SqliteStore
from ..server import create_app
from ..server._serving import run as run_server
from ..settings import Settings

DEFAULTS = Settings()


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class WorkModelName(StrEnum):
    lifetime = "lifetime"
    pool = "pool"


DEFAULT_WORK_MODEL = WorkModelName(DEFAULTS.work_model.value.lower())


_HINT = "'--port'"


def parse_listen_address(value: str) -> tuple[str | None, int]:
    """`--port`'s value as (host or None, port). Takes `PORT`, Go's listen-address forms
    `:PORT` and `HOST:PORT`, and `[IPv6]:PORT`: the original manager starts its executor
    with `wiz executor --port :8080`. An empty host (`:PORT`) is None, so it is `--host`
    (loopback by default) that is bound, not every interface as Go would."""
    text = value.strip()
    host: str | None = None
    port_text = text
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not inside or not rest.startswith(":"):
            raise typer.BadParameter(
                f"{value!r}: write an IPv6 address as [ADDRESS]:PORT", param_hint=_HINT
            )
        host, port_text = inside, rest[1:]
    elif ":" in text:
        before, _, port_text = text.rpartition(":")
        if ":" in before:
            raise typer.BadParameter(
                f"{value!r}: write an IPv6 address as [ADDRESS]:PORT", param_hint=_HINT
            )
        host = before or None
    # 0 asks the system for a free port, as with Go and uvicorn (the benchmarks use it).
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise typer.BadParameter(
            f"{value!r} is not a port: give PORT, :PORT or HOST:PORT, PORT from 0 to 65535",
            param_hint=_HINT,
        )
    return host, int(port_text)


def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind; 127.0.0.1 keeps it local. A host given in --port wins."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        str,
        typer.Option(
            metavar="[HOST]:PORT",
            help="TCP port: PORT, :PORT (Go's form, as the original manager passes it) or "
            "HOST:PORT ([::1]:PORT for IPv6); a HOST here wins over --host. :PORT binds "
            "--host (loopback by default), not every interface as Go would.",
        ),
    ] = "8080",
    max_workers: Annotated[
        int, typer.Option(min=1, help="Chunks processed at once across all runs.")
    ] = DEFAULTS.max_workers,
    run_workers: Annotated[
        int, typer.Option(min=1, help="A run's worker limit when its MaxWorkers is 0.")
    ] = DEFAULTS.default_run_workers,
    max_pending: Annotated[
        int, typer.Option(min=1, help="Waiting chunks held before AddData answers 429.")
    ] = DEFAULTS.max_pending,
    work_model: Annotated[
        WorkModelName, typer.Option(help="Work model of runs that do not choose one.")
    ] = DEFAULT_WORK_MODEL,
    chunk_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds a chunk may take; 0 = no limit.")
    ] = 0,
    shutdown_grace: Annotated[
        float, typer.Option(min=0, help="Seconds running chunks get to finish on shutdown.")
    ] = DEFAULTS.shutdown_grace,
    data_dir: Annotated[
        Path, typer.Option(help="Where processors write; their file access stays inside.")
    ] = Path("wiz-data"),
    allow_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-root",
            help="A folder outside the data dir that processors may read (repeatable).",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body accepted (413 past it).")
    ] = DEFAULTS.max_body_bytes,
    strict_config: Annotated[
        bool,
        typer.Option(
            help="Refuse (400) Configure and AddData bodies with unknown fields, instead "
            "of ignoring them and naming them in the answer's Warnings."
        ),
    ] = DEFAULTS.strict_config,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="The journal file (SQLite), where accepted chunks and their state are kept "
            "[default: DATA_DIR/wiz.db].",
        ),
    ] = None,
    ephemeral: Annotated[
        bool,
        typer.Option(
            help="Keep everything in memory only: nothing survives the process (no journal)."
        ),
    ] = DEFAULTS.ephemeral,
    fsync: Annotated[
        bool,
        typer.Option(
            help="Sync the journal to disk at each commit: accepted chunks survive a power "
            "loss too, not only a crash of the process (costs a disk flush per commit)."
        ),
    ] = DEFAULTS.fsync,
    max_attempts: Annotated[
        int,
        typer.Option(
            min=1,
            help="Times a chunk may start without ending (the executor stopped or crashed "
            "each time) before it fails instead of running again.",
        ),
    ] = DEFAULTS.max_attempts,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            help="Logging level: info logs the executor's lifecycle (runs, failed chunks); "
            "debug adds every request, outbound HTTP and processor tracebacks."
        ),
    ] = LogLevel.info,
) -> None:
    """Run the executor: serve the Wiz Processor API."""
    port_host, port_number = parse_listen_address(port)
    settings = Settings(
        max_workers=max_workers,
        default_run_workers=run_workers,
        max_pending=max_pending,
        work_model=WorkModel(work_model.value.upper()),
        chunk_timeout=chunk_timeout or None,
        shutdown_grace=shutdown_grace,
        data_dir=data_dir,
        allowed_roots=tuple(allow_root or ()),
        max_body_bytes=max_body_bytes,
        strict_config=strict_config,
        db_path=db,
        ephemeral=ephemeral,
        fsync=fsync,
        max_attempts=max_attempts,
    )
    if not ephemeral and settings.journal_path.exists():  # (a new one is made at start)
        check_journal(settings)
    configure_logging(log_level.value)
    run_server(
        create_app(settings),
        host=port_host or host,
        port=port_number,
        log_config=None,  # configure_logging's, for uvicorn's lines too
        log_level=log_level.value,
        access_log=log_level is LogLevel.debug,
        timeout_graceful_shutdown=int(shutdown_grace) + 1,
    )


def check_journal(settings: Settings) -> None:
    """Open and close the journal once before serving, so that a bad one is a clear
    message and exit code 1 rather than a failed start-up's traceback."""

    async def open_and_close() -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(settings.journal_path, fsync=settings.fsync)
        await asyncio.to_thread(store.open)
        await store.close()

    try:
        asyncio.run(open_and_close())
    except JournalError as exc:
        print(f"wiz executor: {exc.message}", file=sys.stderr)
        raise typer.Exit(1) from None
