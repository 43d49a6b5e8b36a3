"""The processor library: what a processor declares and what it is given per chunk.

A processor is a class. The executor makes instances of it (one per chunk under the
LIFETIME work model, a few long-lived ones under POOL), so per-chunk state belongs in
the `Context`, never on `self`; `self` holds what `setup` prepared once (a connection
pool, a loaded model).
"""

from __future__ import annotations

import hashlib
import inspect
import ssl
import string
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from pydantic import BaseModel, ConfigDict, ValidationError

from ..api import DataFormat
from ..api import Processor as ProcessorInfo
from ..errors import InvalidConfiguration
from ..netpolicy import NetworkPolicy, default_policy


class ProcessorConfig(BaseModel):
    """Base of processor configuration models: the field defaults are the processor's
    default configuration, and an unknown field is an error rather than a silent no-op."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


ConfigT = TypeVar("ConfigT", bound=BaseModel)
_encode = msgspec.json.Encoder().encode


class Input:
    """The chunk a processor is asked to work on."""

    __slots__ = ("chunk_id", "driver", "format", "location", "raw_data")

    def __init__(
        self, chunk_id: str, format: DataFormat, raw_data: Any, driver: str, location: str
    ) -> None:
        self.chunk_id = chunk_id
        self.format = format
        self.raw_data = raw_data
        self.driver = driver
        self.location = location

    def __repr__(self) -> str:
        return f"<Input {self.chunk_id!r} {self.format.value}>"


class Output:
    """What a processor produced: a JSON value (RAW) or a file or folder (FILESYSTEM_REF).

    A processor may also return any JSON-able value, which is taken as `Output.raw(value)`.
    """

    __slots__ = ("driver", "format", "location", "raw_data")

    def __init__(
        self,
        format: DataFormat = DataFormat.RAW,
        raw_data: Any = None,
        driver: str = "",
        location: str = "",
    ) -> None:
        self.format = format
        self.raw_data = raw_data
        self.driver = driver
        self.location = location

    @classmethod
    def raw(cls, value: Any) -> Output:
        return cls(DataFormat.RAW, value)

    @classmethod
    def file(cls, path: str | Path, state: Any = None) -> Output:
        """A local file or folder; `state` (shown as RawData) records what it was made from."""
        return cls(DataFormat.FILESYSTEM_REF, state, "local", str(path))


ProgressSink = Callable[[int, int | None], None]


@dataclass(frozen=True, slots=True)
class Limits:
    """The ceilings the operator set with flags, and the folders processors may read.

    A run may ask for less than a ceiling, never more: `Processor.apply_limits` checks a
    run's configuration against them at Configure (a 400 naming the flag) and each
    chunk's overrides (a FAILED chunk with the same message). They bound what one run
    can make the executor spend, whoever sends it.
    """

    max_download_bytes: int = 1 << 30
    """`--max-download-bytes`: the largest file `get` writes (its `MaxBytes` 0 means this)."""
    max_page_bytes: int = 32 << 20
    """`--max-page-bytes`: the largest page `scrape` holds in memory."""
    max_scrape_parallelism: int = 8
    """`--max-scrape-parallelism`: pages one scrape chunk reads at once, so one chunk
    buffers at most `max_page_bytes * max_scrape_parallelism` bytes."""
    max_ls_entries: int = 1_000_000
    """`--max-ls-entries`: the most entries `ls` lists (its `MaxEntries` 0 means this)."""
    max_chunk_timeout: float | None = 3600.0
    """`--max-chunk-timeout`: the longest a run's `ChunkTimeout` may be; None = no ceiling."""
    data_dir: Path = Path("wiz-data")
    """Where processors write, and read."""
    allowed_roots: tuple[Path, ...] = ()
    """Further folders processors may read (`--allow-root`)."""


def ceiling(model: BaseModel, field: str, limit: int, flag: str, where: str = "") -> int:
    """The value of a size `field` of `model` once the operator's `limit` applies.

    0 means the ceiling, and so does a default above it (the run asked for nothing);
    a value the run set above it is refused, naming the field and the `flag` that sets
    the ceiling, so the person who sent it knows which side has to change.
    """
    value: int = getattr(model, field)
    if value > limit and field in model.model_fields_set:
        raise InvalidConfiguration(
            f"Processor.{where}{field} {value} is above the executor's {flag} ({limit})"
        )
    return limit if value == 0 or value > limit else value


class Context(Generic[ConfigT]):
    """Everything a processor may know about the chunk it works on, and how to report."""

    __slots__ = (
        "_report",
        "allowed_roots",
        "attempt",
        "chunk_id",
        "config",
        "data_dir",
        "limits",
        "network",
        "proc_id",
        "run_id",
        "tls",
    )

    def __init__(
        self,
        proc_id: str,
        run_id: str,
        chunk_id: str,
        config: ConfigT,
        data_dir: Path,
        report: ProgressSink,
        allowed_roots: tuple[Path, ...] = (),
        network: NetworkPolicy | None = None,
        tls: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        attempt: int = 1,
    ) -> None:
        self.proc_id = proc_id
        self.run_id = run_id
        self.chunk_id = chunk_id
        self.config = config
        """The run's configuration with this chunk's overrides applied."""
        self.data_dir = data_dir
        self.allowed_roots = allowed_roots
        """Folders outside `data_dir` that processors may read (`--allow-root`); check
        user paths with `processors._sandbox.Sandbox`, which is built only on demand."""
        self.network = network if network is not None else default_policy()
        """What the processor may connect to (`--allow-net`, `--deny-net`): make HTTP
        clients with `netpolicy.guarded_client(context.network, ...)`."""
        self.tls = tls
        """What HTTPS sources are verified against: the system's CAs plus the executor's
        `--ssl-ca-certs` (None: the default trust)."""
        self.limits = limits or Limits(data_dir=data_dir, allowed_roots=allowed_roots)
        """The operator's ceilings (the configuration already respects them)."""
        self._report = report
        self.attempt = attempt
        """Which run of this chunk this is: 1 the first time; more when the executor
        stopped or crashed while it ran before (processing is at-least-once, so a
        processor with side effects must be idempotent, or use this to tell)."""

    @classmethod
    def _of_chunk(
        cls,
        proc_id: str,
        run_id: str,
        chunk_id: str,
        config: ConfigT,
        data_dir: Path,
        report: ProgressSink,
        allowed_roots: tuple[Path, ...],
        network: NetworkPolicy,
        tls: ssl.SSLContext | None,
        limits: Limits,
        attempt: int,
    ) -> Context[ConfigT]:
        """The chunk runner's constructor: every value given, none to default, all
        positional. The same object as `Context(...)` makes, for a third of its cost
        (its keywords and defaults were ~1 µs of every chunk)."""
        self = object.__new__(cls)
        self.proc_id = proc_id
        self.run_id = run_id
        self.chunk_id = chunk_id
        self.config = config
        self.data_dir = data_dir
        self._report = report
        self.allowed_roots = allowed_roots
        self.network = network
        self.tls = tls
        self.limits = limits
        self.attempt = attempt
        return self

    @property
    def scratch_dir(self) -> Path:
        """This chunk's own folder inside the data directory, created on first use."""
        path = self.data_dir / folder_name(self.proc_id) / folder_name(self.run_id)
        path = path / folder_name(self.chunk_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report_progress(self, done: int, total: int | None = None) -> None:
        """Tell the run view and event stream how far this chunk has come (any thread)."""
        self._report(done, total)


_READABLE = frozenset(string.ascii_letters + string.digits + "-_.")
_MAX_READABLE = 64
_PREFIX = 40


def folder_name(part: str) -> str:
    """The folder name of one ID (a processor's, a run's or a chunk's): one path
    component, at most 73 ASCII bytes, and a different one for every different ID.

    IDs come from users and may hold anything. An ID that is already a safe name
    (ASCII letters, digits, `-`, `_`, `.`, not starting with `.`, at most 64
    characters) is its own folder name, so `c1` stays `c1`. Any other ID becomes a
    readable prefix made of its safe characters, `~`, and a 128-bit hash of the exact
    ID: `x/1` is `x_1~<hash>`, never `x_1`. `~` is never in a name kept as it is, so the
    two kinds cannot meet, and two escaped names are equal only if their IDs are.
    (Replacing characters alone mapped `x/1` and `x_1` to one folder, and a long ID
    to a name the file system refused.)
    """
    if 0 < len(part) <= _MAX_READABLE and part[0] != "." and _READABLE.issuperset(part):
        return part
    prefix = "".join(c if c in _READABLE else "_" for c in part[:_PREFIX]).lstrip(".")
    digest = hashlib.blake2b(part.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"{prefix}~{digest}"


class Processor(ABC, Generic[ConfigT]):
    """Base class of processors: metadata, a configuration model, do-nothing hooks and
    one abstract `run`, which may be a plain function (run on a worker thread, so it may
    block) or a coroutine function (run on the event loop, so it must not block)."""

    id: ClassVar[str]
    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type[BaseModel]] = ProcessorConfig

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        """The run's configuration (without any chunk's overrides)."""

    async def setup(self) -> None:
        """Prepare what every chunk will share; called once per instance."""

    async def teardown(self) -> None:
        """Release what `setup` took; called once when the instance is discarded."""

    @abstractmethod
    def run(self, data: Input, context: Context[ConfigT]) -> Any:
        """Process one chunk; return an `Output` or a JSON-able value; raise to fail it."""

    # -- class-level helpers the executor uses -----------------------------------------

    @classmethod
    def info(cls) -> ProcessorInfo:
        return ProcessorInfo(ProcID=cls.id, Name=cls.name, Version=cls.version)

    @classmethod
    def is_async(cls) -> bool:
        return inspect.iscoroutinefunction(cls.run)

    @classmethod
    def parse_config(cls, raw: Any) -> BaseModel:
        """Validate a run's `Processor` configuration; null means the defaults. An
        unknown field is an error here (see `check_config` to have it ignored)."""
        return cls.check_config(raw, allow_unknown=False)[0]

    @classmethod
    def check_config(cls, raw: Any, *, allow_unknown: bool) -> tuple[BaseModel, list[str]]:
        """Validate a run's `Processor` configuration, strictly typed; null means the
        defaults. Returns the configuration and the dotted paths of the unknown fields
        it ignored: with `allow_unknown`, fields the model does not know (at the top, or
        inside one of its objects, as scrape's `config.Foo`) are left out and named,
        since the original manager's own example sends `{"test": "test"}`; without it
        they are an error. A wrong type or an out-of-range value is always an error.
        """
        value = {} if raw is None else raw
        try:
            return _validate(cls.Config, value), []
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            extra = [err["loc"] for err in errors if err["type"] == "extra_forbidden"]
            if not allow_unknown or len(extra) < len(errors):
                raise InvalidConfiguration(
                    f"invalid configuration for processor {cls.id!r}: {_describe(exc)}"
                ) from None
        for loc in extra:
            value = _without(value, loc)
        try:
            config = _validate(cls.Config, value)
        except ValidationError as exc:  # a path that did not lead where it said
            raise InvalidConfiguration(
                f"invalid configuration for processor {cls.id!r}: {_describe(exc)}"
            ) from None
        return config, [".".join(str(p) for p in loc) for loc in extra]

    @classmethod
    def apply_limits(cls, config: BaseModel, limits: Limits) -> BaseModel:
        """`config` within the operator's `limits`: the configuration the processor sees.

        Called on the run's configuration at Configure and on a chunk's configuration
        when its RawData overrides fields. Raise `InvalidConfiguration` for what asks
        for more than a ceiling (or reads outside the allowed folders, when that can be
        told from the configuration alone); return the configuration, with fields that
        mean "the ceiling" (0, or a default above it) set to it. The default allows all.
        """
        return config

    @classmethod
    def config_for_chunk(cls, run_config: BaseModel, raw_data: Any) -> BaseModel:
        """The run's configuration with the fields a chunk's RawData object overrides.

        As in the original executor, a chunk may carry configuration fields next to its
        data. Only fields of the configuration model count; anything else is data.
        """
        if type(raw_data) is not dict:
            return run_config
        fields = cls.Config.model_fields
        overrides = {k: v for k, v in raw_data.items() if k in fields}
        if not overrides:
            return run_config
        try:
            return _validate(cls.Config, {**run_config.model_dump(mode="json"), **overrides})
        except ValidationError as exc:
            raise InvalidConfiguration(
                f"chunk overrides an invalid configuration: {_describe(exc)}"
            ) from None


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], value: Any) -> M:
    """Validate a decoded JSON value strictly, as JSON: `"5"` is not a number nor `1` a
    boolean (Go's decoder refuses both), while what JSON can only spell one way (an array
    for a tuple, a string for an enum, a path or a date) is still read, as pydantic's
    strict JSON mode does and its strict Python mode would not."""
    try:
        body = _encode(value)
    except (TypeError, msgspec.EncodeError):  # not from JSON (a caller's Python objects)
        return model.model_validate(value, strict=True)
    return model.model_validate_json(body, strict=True)


def _without(value: Any, loc: tuple[int | str, ...]) -> Any:
    """A copy of `value` without the key at `loc` (copying only the containers on the
    way, so the configuration the run keeps, as sent, is untouched)."""
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if type(value) is dict and head in value:
        if not rest:
            return {k: v for k, v in value.items() if k != head}
        return {**value, head: _without(value[head], rest)}
    if type(value) is list and type(head) is int and 0 <= head < len(value):
        copy = list(value)
        copy[head] = _without(value[head], rest)
        return copy
    return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "configuration"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
