"""What runs inside a RAY actor: one processor instance, set up once, running batches.

This module is imported on every Ray worker (it is part of the installed package), so
it imports nothing of the executor's server side, and Ray only inside `actor_class`.
A processor class is sent to the actor pickled by reference: its module must be
importable on every node (the built-ins and installed plugins are).

An actor runs one batch at a time, one chunk after another, on the actor's event loop
(see `ChunkActor`), and answers the executor's progress polls meanwhile.

A batch travels as one msgpack blob each way (`pack`/`unpack`), not as Python objects:
Ray's own serializer pickles every tuple of a list on its own (its msgpack is strict
about types), which cost more per chunk than running a noop one. What msgpack cannot
carry (a processor's output that is no JSON-like value, an integer beyond 64 bits) goes
as before, as Python objects that Ray pickles, so no value is refused here.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import ssl
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from .._tls import pem_context
from ..api import DataFormat
from ..errors import ChunkTimeout, WizError
from ..netpolicy import NetworkPolicy
from ..processors import Context, Input, Limits, Output, Processor
from ..wire import MAX_DEPTH, too_deep
from ._deadlines import Deadlines

OK, FAILED, BROKEN = 0, 1, 2
"""Outcome codes of one chunk in a batch's answer. BROKEN: the chunk failed and the
instance must not be used again (a blocking `run` timed out and may still hold it)."""

FORMATS: dict[str, DataFormat] = {f.value: f for f in DataFormat}
"""A data format by its wire value (a dict lookup: the enum's call costs more per chunk)."""

_json = msgspec.json.Encoder().encode
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode


def pack(rows: list[list[Any]]) -> bytes | list[list[Any]]:
    """A batch's rows (chunks going, or results coming back) as one msgpack blob; the
    rows themselves when one holds what msgpack cannot carry (Ray pickles them then)."""
    try:
        return _pack(rows)
    except (TypeError, ValueError, OverflowError):
        return rows


def unpack(body: bytes | list[list[Any]]) -> list[list[Any]]:
    """What `pack` made, back as rows."""
    if type(body) is bytes:
        rows: list[list[Any]] = _unpack(body)
        return rows
    assert isinstance(body, list)
    return body


class ChunkActor:
    """One processor instance on a Ray worker (wrapped by `ray.remote` in `actor_class`).

    An async actor: its methods run on the actor's event loop, so an async processor's
    `setup` and `run` share one loop (as in POOL) with no thread hop per batch. Batches
    take turns (`_turn`), one chunk after another, on the one instance; `progress`
    answers meanwhile. A blocking `run` goes to a thread of its own, which a timeout
    can abandon (the instance is then not used again)."""

    def __init__(
        self,
        cls: type[Processor[Any]],
        config: Any,
        data_dir: str,
        allowed_roots: tuple[str, ...],
        limits: Limits,
        network: NetworkPolicy | None,
        ca_certs: str | None = None,
    ) -> None:
        self.cls = cls
        self.config = config
        self.data_dir = Path(data_dir)
        self.allowed_roots = tuple(Path(p) for p in allowed_roots)
        self.limits = limits
        self.network = network
        self.tls: ssl.SSLContext | None = None if ca_certs is None else pem_context(ca_certs)
        """What the processor's HTTPS clients trust, as in POOL (`Context.tls`): the
        default trust plus the executor's `--ssl-ca-certs`, whose certificates come as
        PEM text (the bundle's path may not exist on this node); None: the default."""
        self.instance: Processor[Any] | None = None
        self.progress_now: tuple[str, int, int | None] | None = None
        self.blocking = ThreadPoolExecutor(1, thread_name_prefix="wiz-ray-blocking")
        self.deadlines = Deadlines()
        """The running chunk's timeout, on one timer for the actor's life."""
        base = getattr(Processor.config_for_chunk, "__func__", None)
        own = getattr(cls.config_for_chunk, "__func__", None)
        self._override_fields: frozenset[str] | None = (
            frozenset(cls.Config.model_fields) if own is base else None
        )
        """The configuration fields a chunk's RawData may override (a chunk with none
        of them keeps the run's configuration); None when the class has its own
        `config_for_chunk`, which is then asked about every chunk (as in `_runner`)."""
        self._turn: asyncio.Lock | None = None

    async def ready(self) -> tuple[str, str, int, str | None]:
        """Set the instance up; (node ID, node address, PID, why setup failed or None)."""
        ray = import_ray()
        ctx = ray.get_runtime_context()
        node_ip = ray.util.get_node_ip_address()
        failure: str | None = None
        try:
            instance = self.cls(self.config)
            if self.cls.setup is not Processor.setup:
                await instance.setup()
            self.instance = instance
        except Exception as exc:
            failure = f"processor setup failed: {type(exc).__name__}: {exc}"
        return ctx.get_node_id(), node_ip or socket.gethostname(), os.getpid(), failure

    async def progress(self) -> tuple[str, int, int | None] | None:
        """(chunk ID, done, total) of what the running chunk last reported."""
        return self.progress_now

    async def run_batch(
        self,
        body: bytes | list[list[Any]],
        proc_id: str,
        run_id: str,
        chunk_timeout: float | None,
    ) -> bytes | list[list[Any]]:
        """Run each chunk `[id, format, raw, driver, location, attempt]` of the packed
        `body`; answer, packed, per chunk `[OK, format, raw, driver, location]` or
        `[FAILED|BROKEN, message]`."""
        items = unpack(body)
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            task = asyncio.current_task()
            assert task is not None
            is_async = self.cls.is_async()
            out: list[list[Any]] = []
            for item in items:
                if self.instance is None:
                    out.append([BROKEN, "processor instance is gone (a chunk before broke it)"])
                    continue
                out.append(await self._one(item, proc_id, run_id, chunk_timeout, is_async, task))
            return pack(out)

    async def _one(
        self,
        item: list[Any],
        proc_id: str,
        run_id: str,
        chunk_timeout: float | None,
        is_async: bool,
        task: asyncio.Task[Any],
    ) -> list[Any]:
        """One chunk, its timeout on the actor's one timer (`Deadlines`): a timer made
        and dropped per chunk (`asyncio.timeout`) was half the actor's cost of a noop."""
        instance = self.instance
        assert instance is not None
        self.progress_now = None
        try:
            data, context = self._prepare(item, proc_id, run_id)
            if is_async:
                pending: Any = instance.run(data, context)
            else:
                loop = asyncio.get_running_loop()
                pending = loop.run_in_executor(self.blocking, instance.run, data, context)
            if chunk_timeout:
                deadline = self.deadlines.start(task, chunk_timeout)
                try:
                    result = await pending
                except TimeoutError:
                    if deadline.expired:  # (the processor turned the cancellation into it)
                        task.uncancel()
                        raise
                    raise RuntimeError("TimeoutError raised by the processor") from None
                except asyncio.CancelledError:
                    if deadline.timed_out():
                        raise TimeoutError from None
                    raise
                else:
                    if deadline.expired:  # the processor swallowed the cancellation
                        task.uncancel()
                finally:
                    self.deadlines.end(deadline)
            else:
                result = await pending
        except TimeoutError:
            if is_async:
                return [FAILED, ChunkTimeout(chunk_timeout or 0).message]
            self.instance = None  # its thread cannot be stopped and may still use it
            return [BROKEN, ChunkTimeout(chunk_timeout or 0).message]
        except (Exception, SystemExit) as exc:
            return _failure(exc)
        finally:
            self.progress_now = None
        return _success(result, data.raw_data)

    def _prepare(self, item: list[Any], proc_id: str, run_id: str) -> tuple[Input, Context[Any]]:
        chunk_id, fmt, raw, driver, location, attempt = item

        def report(done: int, total: int | None) -> None:
            self.progress_now = (chunk_id, done, total)

        data = Input(chunk_id, FORMATS[fmt], raw, driver, location)
        config = self.config
        fields = self._override_fields
        if fields is None or (type(raw) is dict and not fields.isdisjoint(raw)):
            cls = self.cls
            config = cls.config_for_chunk(config, raw)
            if config is not self.config:
                config = cls.apply_limits(config, self.limits)
        context = Context(
            proc_id,
            run_id,
            chunk_id,
            config,
            self.data_dir,
            report,
            self.allowed_roots,
            network=self.network,
            tls=self.tls,
            limits=self.limits,
            attempt=attempt,
        )
        return data, context

    async def teardown(self) -> None:
        """Tear the instance down (a failing teardown is only reported in its log)."""
        instance, self.instance = self.instance, None
        if instance is not None and type(instance).teardown is not Processor.teardown:
            try:
                await instance.teardown()
            except Exception:
                traceback.print_exc()


def _failure(exc: BaseException) -> list[Any]:
    """A processor's exception as the chunk's error: the remote traceback's last line."""
    if isinstance(exc, WizError):
        return [FAILED, exc.message]
    last = traceback.format_exception_only(exc)[-1].strip()
    return [FAILED, last if str(exc) else repr(exc)]


def _success(result: Any, raw_in: Any) -> list[Any]:
    """A processor's result as the chunk's answer, checked here as `ChunkRunner` checks
    it (nesting, JSON): on the actor, so that the executor, whose one event loop every
    chunk of every actor goes through, need not (`unpack` answers are checked)."""
    if isinstance(result, Output):
        fmt, raw, driver, location = (
            result.format.value,
            result.raw_data,
            result.driver,
            result.location,
        )
    else:
        fmt, raw, driver, location = RAW, result, "", ""
    if raw is not raw_in:  # what came in as JSON goes out as JSON; anything else is checked
        if too_deep(raw):
            return [FAILED, f"processor output nests deeper than {MAX_DEPTH} levels"]
        try:
            _json(raw)
        except (TypeError, ValueError, OverflowError) as exc:
            return [FAILED, f"processor output is not JSON: {exc}"]
    return [OK, fmt, raw, driver, location]


RAW = DataFormat.RAW.value


def sees_file(path: str) -> tuple[str, str, bool]:
    """(node ID, node address, whether `path` exists here): the shared-storage check."""
    ray = import_ray()
    return (
        ray.get_runtime_context().get_node_id(),
        ray.util.get_node_ip_address(),
        os.path.exists(path),
    )


def import_ray() -> Any:
    """The `ray` module, imported on first use (untyped for mypy: Ray's hints are partial)."""
    return importlib.import_module("ray")


_lock = threading.Lock()
_remote: dict[str, Any] = {}


def actor_class() -> Any:
    """`ChunkActor` as a Ray actor class (made once, Ray imported only here)."""
    with _lock:
        if "actor" not in _remote:
            ray = import_ray()
            _remote["actor"] = ray.remote(ChunkActor)
            _remote["sees_file"] = ray.remote(num_cpus=0)(sees_file)
        return _remote["actor"]


def sees_file_task() -> Any:
    actor_class()
    return _remote["sees_file"]
