"""Following several runs at once: a run and every run reachable downstream of it.

`wiz watch` starts from one run (or from the runs of a pipeline launch) and follows each
on its own task. A run's snapshot names its downstream runs (`SendDownstream` and
`DownstreamLocations`); each one not yet followed gets a task too, on the executor its
`Hostname` names, so the watch spreads over a whole pipeline, across executors.

Which executor gets which token: `--token` goes to the executor of `--url` only (a
`Hostname` naming the same host:port counts as it); another executor gets the token
given for its host:port (`--downstream-token HOST=TOKEN`, as `wiz executor` takes it),
else none. A pipeline's configuration must not be able to make the CLI hand the user's
token to a host the user did not name.

A downstream run that cannot be followed (its executor unreachable, the run not there,
a 401) is marked with the reason and counts as ended: the watch goes on with the
others. The first runs, the ones the user named, are the exception: an error there is
the command's error, as for a single run.

Throughput and ETA come from the executor's Run (`ChunksPerSecond`, `EtaSeconds`). The
stream's events do not carry them, so while a run is unfinished the run is read again
every `refresh` seconds, but only from an executor whose first answer had them (an
older executor, or the Go original, is not polled for what it does not send).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import httpx
from anyio.abc import TaskGroup

from .._tls import CA_CERTS_HINT, Verify, verification_failure
from ..api import Run, State
from ..client import AsyncClient, Event
from ..errors import Unauthorized, WizError
from ..settings import host_key
from ._progress import RunTracker


@dataclass(eq=False)
class Followed:
    """One run being followed: where, its progress, and how it ended."""

    base_url: str
    proc_id: str
    run_id: str
    tracker: RunTracker
    root: bool = False
    other_executor: bool = False
    """On another executor than --url's (shown with its address)."""
    final: Run | None = None
    """The run as it ended (None while it runs, or when it could not be followed)."""
    failures: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        run = f"{self.proc_id}/{self.run_id}"
        return f"{self.base_url} {run}" if self.other_executor else run

    @property
    def problem(self) -> str | None:
        return self.tracker.problem

    @property
    def errored(self) -> bool:
        return self.final is not None and self.final.CurrentState is State.ERRORED


OnEvent = Callable[[Followed, Event], None]
OnEnd = Callable[[Followed], None]


class RunFollower:
    """Follows runs and, with `downstream`, every run reachable downstream of them."""

    def __init__(
        self,
        url: str,
        token: str | None,
        verify: Verify,
        *,
        tokens: dict[str, str] | None = None,
        downstream: bool = True,
        on_event: OnEvent | None = None,
        on_end: OnEnd | None = None,
        refresh: float = 2.0,
        failures: int = 0,
    ) -> None:
        """`tokens` by host:port for other executors; `failures`: how many failed chunks
        to read of an ERRORED run (for the report)."""
        self.url = url.rstrip("/")
        self.token = token
        self.verify = verify
        self.tokens = {host_key(host): value for host, value in (tokens or {}).items()}
        self.downstream = downstream
        self.on_event = on_event
        self.on_end = on_end
        self.refresh = refresh
        self.failures = failures
        self.followed: dict[tuple[str, str, str], Followed] = {}
        """Every run seen, by (host:port, ProcID, RunID), in the order found."""
        self._bases = {host_key(self.url): self.url}
        self._clients: dict[str, AsyncClient] = {}
        self._stack = AsyncExitStack()
        self._tg: TaskGroup | None = None

    async def run(self, roots: list[tuple[str, str]]) -> list[Followed]:
        """Follow `roots` (ProcID, RunID on --url's executor) and what they feed, until
        every one has ended or could not be followed."""
        try:
            async with self._stack, anyio.create_task_group() as tg:
                self._tg = tg
                for proc_id, run_id in roots:
                    self._add(self.url, proc_id, run_id, root=True)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        return list(self.followed.values())

    def _add(self, base: str, proc_id: str, run_id: str, *, root: bool = False) -> None:
        key = (host_key(base), proc_id, run_id)
        if key in self.followed or self._tg is None:
            return
        f = Followed(
            base,
            proc_id,
            run_id,
            RunTracker(proc_id, run_id),
            root=root,
            other_executor=host_key(base) != host_key(self.url),
        )
        self.followed[key] = f
        self._tg.start_soon(self._follow, f)

    async def _client(self, base: str) -> AsyncClient:
        client = self._clients.get(base)
        if client is None:
            token = self.token if base == self.url else self.tokens.get(host_key(base), "")
            client = AsyncClient(base, token=token, verify=self.verify)
            self._clients[base] = await self._stack.enter_async_context(client)
        return client

    async def _follow(self, f: Followed) -> None:
        refreshing: anyio.CancelScope | None = None
        try:
            client = await self._client(f.base_url)
            async with aclosing(client.follow(f.proc_id, f.run_id)) as items:
                async for item in items:
                    f.tracker.update(item)
                    if not isinstance(item, Run):
                        if self.on_event is not None:
                            self.on_event(f, item)
                        continue
                    f.final = item
                    self._found(f, item)
                    if item.ChunksPerSecond is not None and refreshing is None and self._tg:
                        refreshing = anyio.CancelScope()
                        self._tg.start_soon(self._refresh, client, f, refreshing)
        except (WizError, httpx.TransportError) as exc:
            if f.root:
                raise
            f.final = None
            f.tracker.fail(self._describe(f, exc))
        finally:
            if refreshing is not None:
                refreshing.cancel()
        if f.errored and self.failures:
            try:
                f.failures = await _failures(client, f.proc_id, f.run_id, self.failures)
            except (WizError, httpx.TransportError) as exc:
                f.failures = [f"  (its failed chunks could not be read: {self._describe(f, exc)})"]
        if self.on_end is not None:
            self.on_end(f)

    async def _refresh(self, client: AsyncClient, f: Followed, scope: anyio.CancelScope) -> None:
        """Read the run again now and then for its throughput and ETA, until the follow
        cancels `scope` (a failed read is only a missed update: the follow itself says
        when something is wrong)."""
        with scope:
            while self.refresh > 0:
                await anyio.sleep(self.refresh)
                try:
                    f.tracker.rates(await client.run(f.proc_id, f.run_id))
                except (WizError, httpx.TransportError):
                    continue

    def _found(self, f: Followed, run: Run) -> None:
        """Follow the downstream runs a snapshot names."""
        ec = run.Configuration.ExecutorConfig
        if not (self.downstream and ec.SendDownstream and ec.DownstreamLocations):
            return
        for loc in ec.DownstreamLocations:
            self._add(self._base(loc.Hostname), loc.ProcID, loc.RunID)

    def _base(self, hostname: str) -> str:
        """The base URL of the executor a `Hostname` names (host:port means http, as
        for deliveries); one per host:port, --url's own for its host:port."""
        text = hostname.strip().rstrip("/")
        base = text if "://" in text else f"http://{text}"
        return self._bases.setdefault(host_key(text), base)

    def _describe(self, f: Followed, exc: WizError | httpx.TransportError) -> str:
        if isinstance(exc, Unauthorized):
            host = urlsplit(f.base_url).netloc
            return f"{exc.message} (give its token with --downstream-token {host}=TOKEN)"
        if isinstance(exc, WizError):
            return exc.message
        refused = verification_failure(exc)
        if refused:
            return f"cannot reach {f.base_url}: {refused}; {CA_CERTS_HINT}"
        text = str(exc)
        reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return f"cannot reach {f.base_url}: {reason}"


async def _failures(client: AsyncClient, proc: str, run: str, limit: int) -> list[str]:
    """Why an ERRORED run failed: its failed chunks and undelivered outputs."""
    spec = await client.data(proc, run)
    lines = [f"  {c.ChunkID}: {c.Error or 'failed'}" for c in spec.In if c.State.value == "FAILED"]
    lines += [
        f"  {o.ChunkID}: not delivered downstream: {o.DeliveryError}"
        for o in spec.Out
        if o.DeliveryError
    ]
    if len(lines) > limit:
        lines = [*lines[:limit], f"  … and {len(lines) - limit} more (wiz data {proc} {run})"]
    return lines


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ended the task group (a failing task cancels its siblings)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        return exc
    return group
