"""`wiz executor`: serve the Processor API until SIGINT or SIGTERM.

On a signal uvicorn stops accepting connections, ends the event streams and lets open
requests end; then the app's lifespan shuts the executor down in order (running chunks
get the grace period; with the durable journal the rest stay in it and run after the
restart, with `--ephemeral` they fail with a message saying why).

Listening on anything but a loopback address without a token is refused before
anything is bound: whoever reaches the port could run processors that fetch URLs and
read files. `--insecure` insists.

A journal that cannot be opened (damaged, not a journal, written by a newer version) is
checked before serving: its message (naming the file and what to do) and exit code 1,
never a traceback and never a silent fresh start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .._logs import configure_logging
from .._tls import client_context, server_context
from ..api import WorkModel
from ..errors import JournalError, TLSError
from ..journal import SqliteStore
from ..netpolicy import is_loopback_name, parse_cidr
from ..server import create_app
from ..server._serving import connection_options, tls_options
from ..server._serving import run as run_server
from ..settings import Settings, check_token, normalize_origin, parse_duration
from ._common import EXIT_USAGE, CaCertsOption, WorkModelName, fail, flag
from ._config import load_config

log = logging.getLogger("wiz_executor.server")

DEFAULTS = Settings()


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormatName(StrEnum):
    text = "text"
    json = "json"


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


def _check_cidrs(values: list[str] | None) -> list[str] | None:
    """`--allow-net`/`--deny-net` values, each a network in CIDR notation."""
    for value in values or ():
        try:
            parse_cidr(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return values


def parse_keep_finished(value: str) -> float | None:
    """`--keep-finished`: seconds (`604800`) or a number with a unit (`30m`, `12h`,
    `7d`); `0` keeps finished runs for ever (None), as `--max-chunk-timeout 0` sets no
    ceiling."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--keep-finished'") from None
    return seconds or None


def _read_secret_file(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        fail(f"cannot read {flag} {path}: {why}", EXIT_USAGE)


def load_token(token: str | None, token_file: Path | None) -> str | None:
    """The executor's token from --token (or WIZ_TOKEN) or --token-file, checked."""
    if token is not None and token_file is not None:
        fail("give the token once: --token (or WIZ_TOKEN) or --token-file, not both", EXIT_USAGE)
    source = "--token (or WIZ_TOKEN)"
    if token_file is not None:
        token, source = _read_secret_file(token_file, "--token-file").strip(), str(token_file)
        if not token:
            fail(f"--token-file {token_file} is empty: put the token in it", EXIT_USAGE)
    if token is None:
        return None
    try:
        return check_token(token, source)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def parse_downstream_tokens(entries: list[str], token_file: Path | None) -> dict[str, str]:
    """`HOST=TOKEN` entries from --downstream-token and --downstream-token-file (one a
    line; blank lines and `#` comments skipped); the options win over the file."""
    lines: list[tuple[str, str]] = []
    if token_file is not None:
        text = _read_secret_file(token_file, "--downstream-token-file")
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append((f"{token_file} line {number}", line.strip()))
    lines += [("--downstream-token", entry) for entry in entries]
    tokens: dict[str, str] = {}
    for where, entry in lines:
        host, equals, token = entry.partition("=")
        if not equals or not host.strip() or not token.strip():
            fail(f"{where}: expected HOST=TOKEN (HOST as in a Hostname, host:port)", EXIT_USAGE)
        try:
            tokens[host.strip()] = check_token(token.strip(), f"{where}: the token")
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    return tokens


def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="WIZ_CONFIG",
            show_envvar=True,
            metavar="PATH",
            dir_okay=False,
            is_eager=True,  # read before the other options, whose defaults it sets
            callback=load_config,
            help="A TOML file of settings, keys named as the flags (max-workers = 8). Every "
            "option can also come from WIZ_<NAME> (WIZ_MAX_WORKERS); a flag wins over the "
            "environment, which wins over the file.",
        ),
    ] = None,
    print_config: Annotated[
        bool,
        flag(
            "--print-config",
            "Print each setting, its value and where it came from (flag, environment, "
            "file, default; secrets masked), then exit.",
        ),
    ] = False,
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
        float,
        typer.Option(
            min=0,
            help="Seconds a chunk may take when its run sets no ChunkTimeout; "
            "0 = --max-chunk-timeout.",
        ),
    ] = 0,
    max_chunk_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            help="The longest ChunkTimeout a run may ask for (and the default one); "
            "0 = no ceiling.",
        ),
    ] = DEFAULTS.max_chunk_timeout or 0,
    max_download_bytes: Annotated[
        int,
        typer.Option(min=1, help="Largest file get writes; a run's MaxBytes may only lower it."),
    ] = DEFAULTS.max_download_bytes,
    max_page_bytes: Annotated[
        int,
        typer.Option(
            min=1, help="Largest page scrape holds in memory; MaxPageBytes may only lower it."
        ),
    ] = DEFAULTS.max_page_bytes,
    max_scrape_parallelism: Annotated[
        int,
        typer.Option(
            min=1, help="Pages one scrape chunk reads at once; Parallelism may only lower it."
        ),
    ] = DEFAULTS.max_scrape_parallelism,
    max_ls_entries: Annotated[
        int,
        typer.Option(min=1, help="Most entries ls lists; MaxEntries may only lower it."),
    ] = DEFAULTS.max_ls_entries,
    shutdown_grace: Annotated[
        float, typer.Option(min=0, help="Seconds running chunks get to finish on shutdown.")
    ] = DEFAULTS.shutdown_grace,
    keep_alive_timeout: Annotated[
        int,
        typer.Option(
            min=1,
            help="Seconds an idle keep-alive connection stays open; longer than clients "
            "keep theirs (Go's 90 s), so none reuses one just as it is closed.",
        ),
    ] = DEFAULTS.keep_alive_timeout,
    delivery_timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Seconds an output is retried while its downstream is unreachable or "
            "refuses it (5xx, 429) before its delivery fails.",
        ),
    ] = DEFAULTS.delivery_timeout,
    downstream_backoff: Annotated[
        float, typer.Option(min=0, help="First delay between delivery tries, doubled after each.")
    ] = DEFAULTS.downstream_backoff,
    delivery_backoff_cap: Annotated[
        float, typer.Option(min=0, help="Longest delay between two delivery tries.")
    ] = DEFAULTS.delivery_backoff_cap,
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
    allow_net: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-net",
            metavar="CIDR",
            callback=_check_cidrs,
            help="A network processors may connect to although the defaults refuse it "
            "(e.g. 127.0.0.1/32 for a service on loopback); repeatable. The most specific "
            "rule wins.",
        ),
    ] = None,
    deny_net: Annotated[
        list[str] | None,
        typer.Option(
            "--deny-net",
            metavar="CIDR",
            callback=_check_cidrs,
            help="A network no outbound connection may reach, downstream deliveries "
            "included; repeatable. The most specific rule wins.",
        ),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Serve HTTPS with this certificate (PEM, its chain after it); needs "
            "--ssl-keyfile.",
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="The private key (PEM) of --ssl-certfile."),
    ] = None,
    ssl_keyfile_password: Annotated[
        str | None,
        typer.Option(
            envvar="WIZ_SSL_KEYFILE_PASSWORD",
            show_envvar=True,
            help="Password of an encrypted --ssl-keyfile (the environment variable keeps "
            "it out of the process list).",
        ),
    ] = None,
    ssl_ca_certs: CaCertsOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="WIZ_TOKEN",
            show_envvar=True,
            help="Require this bearer token (Authorization: Bearer TOKEN) on every request "
            "but /healthz. Prefer WIZ_TOKEN or --token-file: a command line is visible to "
            "every local user.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="Read the token from this file (surrounding whitespace dropped)."),
    ] = None,
    insecure: Annotated[
        bool,
        flag(
            "--insecure",
            "Serve on a non-loopback address without a token (anyone who reaches the port "
            "can then run processors).",
        ),
    ] = False,
    metrics_public: Annotated[
        bool, flag("--metrics-public", "Serve /metrics without the token.")
    ] = False,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            metavar="ORIGIN",
            help="A browser origin (scheme://host[:port]) besides the executor's own whose "
            "pages may call the API (repeatable).",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="A name the Host header may give besides loopback addresses and the "
            "address bound (repeatable; * = any); others get 421 (DNS rebinding).",
        ),
    ] = None,
    downstream_token: Annotated[
        list[str] | None,
        typer.Option(
            "--downstream-token",
            metavar="HOST=TOKEN",
            help="The token for deliveries to HOST (a DownstreamLocations Hostname, "
            "host:port); others get the executor's own token (repeatable).",
        ),
    ] = None,
    downstream_token_file: Annotated[
        Path | None,
        typer.Option(help="HOST=TOKEN lines, as --downstream-token."),
    ] = None,
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
    keep_finished: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="How long a finished run is kept (seconds, or 30m, 12h, 7d); then it is "
            "removed with its journal rows and files, as DELETE would. 0 keeps them for ever.",
        ),
    ] = "7d",
    max_attempts: Annotated[
        int,
        typer.Option(
            min=1,
            help="Times a chunk may start without ending (the executor stopped or crashed "
            "each time) before it fails instead of running again.",
        ),
    ] = DEFAULTS.max_attempts,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="The Ray cluster RAY runs join: auto, or the head's address (host:port). "
            "Without it the first RAY run starts a local Ray runtime on 127.0.0.1.",
        ),
    ] = None,
    ray_num_cpus: Annotated[
        int | None,
        typer.Option(min=1, help="CPUs of the local Ray runtime [default: the machine's cores]."),
    ] = None,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            help="Logging level: info logs the executor's lifecycle (runs, failed chunks); "
            "debug adds every request, outbound HTTP and processor tracebacks."
        ),
    ] = LogLevel.info,
    log_format: Annotated[
        LogFormatName,
        typer.Option(
            help="text: one readable line per record; json: one JSON object per line (time, "
            "level, logger, message, and processor, run, chunk when it concerns one), for "
            "log shippers."
        ),
    ] = LogFormatName.text,
) -> None:
    """Run the executor: serve the Wiz Processor API."""
    # --config and --print-config are read by ConfiguredCommand (cli/_config.py).
    del config, print_config
    port_host, port_number = parse_listen_address(port)
    bind = port_host or host
    if (ssl_certfile is None) != (ssl_keyfile is None):
        given, missing = (
            ("--ssl-certfile", "--ssl-keyfile")
            if ssl_keyfile is None
            else ("--ssl-keyfile", "--ssl-certfile")
        )
        fail(f"{given} needs {missing}: give both to serve HTTPS, or neither", EXIT_USAGE)
    try:
        # Checked now, so a bad file is one line naming it, not uvicorn's traceback.
        if ssl_certfile is not None and ssl_keyfile is not None:
            server_context(ssl_certfile, ssl_keyfile, ssl_keyfile_password)
        if ssl_ca_certs is not None:
            client_context(ssl_ca_certs)
    except TLSError as exc:
        fail(exc.message, EXIT_USAGE)
    if max_chunk_timeout and chunk_timeout > max_chunk_timeout:
        raise typer.BadParameter(
            f"--chunk-timeout {chunk_timeout:g} may not be above --max-chunk-timeout "
            f"({max_chunk_timeout:g})",
            param_hint="'--chunk-timeout'",
        )
    secret = load_token(token, token_file)
    keep = parse_keep_finished(keep_finished)
    if secret is None and not is_loopback_name(bind) and not insecure:
        fail(
            f"refusing to listen on {bind} without a token: anyone who can reach it could "
            "run processors that fetch URLs and read files. Set one with WIZ_TOKEN=... or "
            "--token-file PATH (clients send it with WIZ_TOKEN or --token), or pass "
            "--insecure to serve without one",
            EXIT_USAGE,
        )
    hosts = list(allow_host or ())
    if not is_loopback_name(bind) and not _is_address(bind):
        hosts.append(bind)  # the name it was told to listen on is its own
    settings = Settings(
        max_workers=max_workers,
        default_run_workers=run_workers,
        max_pending=max_pending,
        work_model=WorkModel(work_model.value.upper()),
        chunk_timeout=chunk_timeout or None,
        max_chunk_timeout=max_chunk_timeout or None,
        max_download_bytes=max_download_bytes,
        max_page_bytes=max_page_bytes,
        max_scrape_parallelism=max_scrape_parallelism,
        max_ls_entries=max_ls_entries,
        shutdown_grace=shutdown_grace,
        keep_alive_timeout=keep_alive_timeout,
        delivery_timeout=delivery_timeout,
        downstream_backoff=downstream_backoff,
        delivery_backoff_cap=delivery_backoff_cap,
        data_dir=data_dir,
        allowed_roots=tuple(allow_root or ()),
        max_body_bytes=max_body_bytes,
        strict_config=strict_config,
        allow_net=tuple(allow_net or ()),
        deny_net=tuple(deny_net or ()),
        listen=(bind, port_number),
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_keyfile_password=ssl_keyfile_password,
        ssl_ca_certs=ssl_ca_certs,
        token=secret,
        metrics_public=metrics_public,
        allowed_origins=_origins(allow_origin or []),
        allowed_hosts=tuple(hosts),
        downstream_tokens=parse_downstream_tokens(downstream_token or [], downstream_token_file),
        db_path=db,
        ephemeral=ephemeral,
        fsync=fsync,
        max_attempts=max_attempts,
        keep_finished=keep,
        ray_address=ray_address or None,
        ray_num_cpus=ray_num_cpus,
    )
    if not ephemeral and settings.journal_path.exists():  # (a new one is made at start)
        check_journal(settings)
    configure_logging(log_level.value, log_format.value)
    if secret is None and not is_loopback_name(bind):
        log.warning(
            "serving on %s without a token (--insecure): anyone who can reach it may use it", bind
        )
    run_server(
        create_app(settings),
        host=bind,
        port=port_number,
        log_config=None,  # configure_logging's, for uvicorn's lines too
        log_level=log_level.value,
        access_log=log_level is LogLevel.debug,
        timeout_graceful_shutdown=int(shutdown_grace) + 1,
        **connection_options(settings),
        **tls_options(settings),
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _origins(values: list[str]) -> tuple[str, ...]:
    try:
        return tuple(normalize_origin(value) for value in values)
    except ValueError as exc:
        fail(f"--allow-origin: {exc}", EXIT_USAGE)


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
