"""Executor-wide settings, with the defaults a fresh `wiz executor` starts with."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .api import WorkModel
from .netpolicy import parse_cidr
from .processors import Limits

_CEILINGS = Limits()

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750's `b64token`: what may follow `Bearer ` in an Authorization header."""
_ORIGIN = re.compile(r"(https?)://([^/?#@\s]+)")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
KEEP_FINISHED_DEFAULT = 7 * 86400.0
"""Seconds a finished run is kept by default (`--keep-finished 7d`)."""


def parse_duration(text: str) -> float:
    """Seconds in `text`: a number of seconds (`3600`, `1.5`) or one with a unit, `s`,
    `m`, `h` or `d` (`30m`, `12h`, `7d`); ValueError (naming the forms) for anything
    else, negative durations included."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: give seconds (3600) or a number with a unit "
            "s, m, h or d (30m, 12h, 7d)"
        )
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit]


def check_token(token: str, source: str = "the token") -> str:
    """`token` if a client can send it as `Authorization: Bearer TOKEN`, else ValueError
    naming `source` (the flag, variable or file it came from)."""
    if not token:
        raise ValueError(f"{source} is empty")
    if not _B64TOKEN.fullmatch(token):
        raise ValueError(
            f"{source} may hold only letters, digits and - . _ ~ + / (then = signs), as "
            "a bearer token must (RFC 6750); e.g. make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return token


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` as browsers write it in `Origin`: lower case, no default
    port, no trailing slash; ValueError for anything else."""
    text = origin.strip().rstrip("/").lower()
    match = _ORIGIN.fullmatch(text)
    if match is None:
        raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port]")
    scheme, host = match.groups()
    default = ":" + _DEFAULT_PORTS[scheme]
    return f"{scheme}://{host.removesuffix(default)}"


def host_key(hostname: str) -> str:
    """The `host:port` a downstream `Hostname` (`host:port`, or a URL) names, in lower
    case, the default port made explicit (80, or 443 for https): how
    `--downstream-token HOST=TOKEN` entries are matched to deliveries, and what the
    deliveries to one host share (their queue and its probing)."""
    text = hostname.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    try:
        port = parts.port
    except ValueError:  # not a port: the delivery says so; keep the text as the key
        return text.lower()
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = 443 if parts.scheme.lower() == "https" else 80
    return f"{host}:{port or default}".lower()


@dataclass(frozen=True, slots=True)
class Settings:
    """What an executor is started with; runs may lower some of it per run."""

    max_workers: int = 64
    """Executor-wide cap on chunks processed at once, across all runs."""
    default_run_workers: int = 8
    """A run's worker limit when its `MaxWorkers` is 0."""
    max_pending: int = 100_000
    """Bound on WAITING chunks across all runs; past it AddData answers 429."""
    work_model: WorkModel = WorkModel.POOL
    """Work model of runs that do not choose one. POOL, because `make bench` says so:
    it wins on CPU per chunk, chunk latency and throughput for cheap and expensive
    processors alike, ties on start-up and idle CPU, and loses only on the memory an
    expensive `setup` holds while a run is open (benchmarks/results/latest.md)."""
    chunk_timeout: float | None = None
    """Seconds a chunk may take when its run sets none; None (or 0) = `max_chunk_timeout`
    (see `default_chunk_timeout`)."""
    max_chunk_timeout: float | None = _CEILINGS.max_chunk_timeout
    """The longest `ChunkTimeout` a run may ask for, and the timeout of runs that set
    none; None = no ceiling (`--max-chunk-timeout 0`, the operator's explicit choice)."""
    max_download_bytes: int = _CEILINGS.max_download_bytes
    """The largest file `get` may write; a run's `MaxBytes` may only lower it."""
    max_page_bytes: int = _CEILINGS.max_page_bytes
    """The largest page `scrape` holds in memory; `MaxPageBytes` may only lower it."""
    max_scrape_parallelism: int = _CEILINGS.max_scrape_parallelism
    """Pages one scrape chunk reads at once; with `max_page_bytes` it bounds the memory
    one chunk buffers. A run's `Parallelism` may only lower it."""
    max_ls_entries: int = _CEILINGS.max_ls_entries
    """The most entries `ls` lists; a run's `MaxEntries` may only lower it."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted; larger ones get 413."""
    shutdown_grace: float = 10.0
    """Seconds running chunks get to finish when the executor stops."""
    keep_alive_timeout: int = 620
    """Whole seconds (uvicorn takes no fractions) an idle keep-alive connection is kept
    open: longer than clients keep theirs (Go's 90 s, OkHttp's 300 s), so that no client
    reuses a connection just as the executor closes it (see `server/_keepalive.py`)."""
    data_dir: Path = field(default_factory=lambda: Path("wiz-data"))
    """Where processors write; their file access is confined to it."""
    allowed_roots: tuple[Path, ...] = ()
    """Folders outside the data directory that processors may read (e.g. `file://`
    sources of `get` and `git`); writes still go only to the data directory."""
    downstream_backoff: float = 0.1
    """First delay between delivery tries, doubled after each (up to
    `delivery_backoff_cap`)."""
    delivery_backoff_cap: float = 30.0
    """Longest delay between two delivery tries of one output, however long the outage."""
    delivery_timeout: float = 3600.0
    """Seconds an output is retried, from when it became ready to send, before its
    delivery is recorded as failed (`DeliveryError`): a downstream outage shorter than
    this loses nothing. A `Retry-After` up to what is left of it is honoured."""
    downstream_attempts: int | None = None
    """An extra bound, off by default: at most this many tries per output and
    location, even within `delivery_timeout`."""
    retry_after: int = 1
    """Seconds a client is told to wait when the executor is full."""
    strict_config: bool = False
    """Refuse (400) a Configure or AddData body holding a field the executor does not
    know. Off by default: the original Go manager and its example pipelines send such
    fields (`"Processor": {"test": "test"}`), so they are ignored and reported in the
    answer's `Warnings` instead, never dropped silently."""
    ssl_certfile: Path | None = None
    """The certificate (PEM, the chain after it) to serve HTTPS with; with `ssl_keyfile`,
    both or neither. None serves plain HTTP."""
    ssl_keyfile: Path | None = None
    """The private key (PEM) of `ssl_certfile`."""
    ssl_keyfile_password: str | None = field(default=None, repr=False)
    """The password of an encrypted `ssl_keyfile`; kept out of the repr (and so of logs)."""
    ssl_ca_certs: Path | None = None
    """A CA bundle trusted, besides the system's, by everything the executor connects to:
    downstream executors, and `get` and `scrape` sources over https."""

    allow_net: tuple[str, ...] = ()
    """Networks (CIDR) processors may connect to although the defaults refuse them
    (`--allow-net`, e.g. `127.0.0.1/32` for a service on loopback); the most specific
    rule wins (`wiz_executor.netpolicy`)."""
    deny_net: tuple[str, ...] = ()
    """Networks (CIDR) no outbound connection may reach, downstream deliveries included
    (`--deny-net`)."""
    listen: tuple[str, int] | None = None
    """The address and port this executor serves its API on (`--host`/`--port`): refused
    to processors' fetches. The server also reports the sockets it bound at start-up."""

    token: str | None = field(default=None, repr=False)
    """The bearer token every API request must carry (`Authorization: Bearer TOKEN`);
    None = no authentication, which the CLI allows only on a loopback address."""
    metrics_public: bool = False
    """Serve /metrics without the token (for a scraper that cannot send one)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins (`scheme://host[:port]`) besides the executor's own whose pages
    may call the API; any other `Origin` is refused with 403."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names a request's `Host` header may give besides loopback addresses and the
    address the request arrived on (`*` = any); others get 421 (DNS rebinding)."""
    downstream_tokens: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    """Bearer tokens for downstream deliveries, by target `host:port`; a target not
    listed gets `token` (the executor's own), if any."""

    db_path: Path | None = None
    """The journal file (`--db`); None is `data_dir/wiz.db`. See `journal_path`."""
    ephemeral: bool = False
    """Keep state in memory only (`--ephemeral`): nothing survives the process. Off by
    default: an AddData answered 200 is in the journal, and survives a crash."""
    fsync: bool = False
    """Sync the journal to disk at each commit (`--fsync`): survives power loss too, at
    the cost of a disk flush per group commit."""
    keep_finished: float | None = KEEP_FINISHED_DEFAULT
    """Seconds a finished run (SUCCEEDED or ERRORED) is kept after it finished; then it
    is removed with its journal rows and its files, as DELETE would (checked every
    min(keep/10, 60) s and once at start, after recovery). None keeps finished runs for
    ever (`--keep-finished 0`): without a bound the journal and the data directory only
    grow."""
    max_attempts: int = 3
    """Times a chunk may start without ending (the process died each time) before
    recovery fails it instead of running it again: a poison chunk cannot crash-loop.
    RAY runs also hold a chunk whose actor or node was lost to it."""
    ray_address: str | None = None
    """The Ray cluster RAY runs join (`auto`, or the head's address); None: the first
    RAY run starts a local runtime, on 127.0.0.1 only."""
    ray_num_cpus: int | None = None
    """CPUs of the local Ray runtime; None: the machine's cores."""

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if self.default_run_workers < 1:
            raise ValueError("default_run_workers must be at least 1")
        if self.max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        # Out of range, these would fail every chunk, delivery or request at once.
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        if self.downstream_attempts is not None and self.downstream_attempts < 1:
            raise ValueError("downstream_attempts must be None or at least 1")
        if not self.delivery_timeout > 0:
            raise ValueError("delivery_timeout must be more than 0")
        if not self.delivery_backoff_cap >= 0:
            raise ValueError("delivery_backoff_cap must be at least 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.ray_num_cpus is not None and self.ray_num_cpus < 1:
            raise ValueError("ray_num_cpus must be None or at least 1")
        if self.keep_finished is not None and not 0 < self.keep_finished < float("inf"):
            raise ValueError("keep_finished must be None or a positive number of seconds")
        if self.chunk_timeout is not None and not self.chunk_timeout >= 0:
            raise ValueError("chunk_timeout must be None or at least 0")
        if self.max_chunk_timeout is not None and not 0 < self.max_chunk_timeout < float("inf"):
            raise ValueError("max_chunk_timeout must be None or a positive number of seconds")
        if (
            self.chunk_timeout
            and self.max_chunk_timeout is not None
            and self.chunk_timeout > self.max_chunk_timeout
        ):
            raise ValueError(
                f"chunk_timeout ({self.chunk_timeout:g}) may not be above max_chunk_timeout "
                f"({self.max_chunk_timeout:g})"
            )
        for name in (
            "max_download_bytes",
            "max_page_bytes",
            "max_scrape_parallelism",
            "max_ls_entries",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.keep_alive_timeout < 1:
            raise ValueError("keep_alive_timeout must be at least 1 (second)")
        if not self.shutdown_grace >= 0 or not self.downstream_backoff >= 0:
            raise ValueError("shutdown_grace and downstream_backoff must be at least 0")
        for cidr in (*self.allow_net, *self.deny_net):
            parse_cidr(cidr)  # a ValueError naming the bad one
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: give both or neither")
        # Absolute once, here: output Locations are handed to other runs (and other
        # processes), which must not read them against their own working directory.
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())
        object.__setattr__(
            self, "allowed_roots", tuple(Path(root).absolute() for root in self.allowed_roots)
        )
        if self.token is not None:
            check_token(self.token)
        for host, token in self.downstream_tokens.items():
            check_token(token, f"the downstream token for {host}")
        # Compared with what requests carry, so kept in the form they carry it.
        object.__setattr__(
            self, "allowed_origins", tuple(normalize_origin(o) for o in self.allowed_origins)
        )
        object.__setattr__(
            self, "allowed_hosts", tuple(h.strip().lower() for h in self.allowed_hosts)
        )
        object.__setattr__(
            self,
            "downstream_tokens",
            {host_key(host): token for host, token in self.downstream_tokens.items()},
        )
        if self.db_path is not None:
            object.__setattr__(self, "db_path", Path(self.db_path).absolute())

    @property
    def journal_path(self) -> Path:
        """Where the durable journal is: `--db`, or `wiz.db` in the data directory."""
        return self.db_path if self.db_path is not None else self.data_dir / "wiz.db"

    @property
    def default_chunk_timeout(self) -> float | None:
        """Seconds a chunk of a run that sets no `ChunkTimeout` may take (None = no limit)."""
        return self.chunk_timeout or self.max_chunk_timeout

    def limits(self) -> Limits:
        """The ceilings and folders processors are held to, as they receive them."""
        return Limits(
            max_download_bytes=self.max_download_bytes,
            max_page_bytes=self.max_page_bytes,
            max_scrape_parallelism=self.max_scrape_parallelism,
            max_ls_entries=self.max_ls_entries,
            max_chunk_timeout=self.max_chunk_timeout,
            data_dir=self.data_dir,
            allowed_roots=self.allowed_roots,
        )
