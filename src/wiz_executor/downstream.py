"""Sending finished outputs to the next run, riding out downstream outages.

Each SUCCEEDED output of a run with `SendDownstream` goes, as an INPUT chunk whose
ChunkID is the output's ID, to run `RunID` of processor `ProcID` at every
`DownstreamLocations[].Hostname`, asking that run to name its output
`{ChunkID}-{RunID}` (so outputs of parallel branches never share an ID at a join).

Connection errors, 5xx and 429 are retried under the project's one retry policy
(`wiz_executor._retrying`): a backoff doubling from `downstream_backoff` up to
`delivery_backoff_cap`, or the downstream's `Retry-After` (seconds or an HTTP-date) when
longer, for as long as `delivery_timeout` (an hour by default) since the output was
ready; other 4xx answers, and a certificate the executor does not trust
(`--ssl-ca-certs` adds CAs), are final. Only then does the delivery fail: the reason is
recorded on the output chunk (`DeliveryError`) and logged, and the run ends ERRORED.
An output is never dropped silently, and a failed delivery can be sent again
(`retry` on the run). Deleting a run cancels its deliveries still queued or retried.

Each downstream host (`host:port`) has its own queue and senders, so a dead host never
holds up the outputs for a live one. While a host is down (its last answer was a
connection error, 5xx or 429), one delivery at a time probes it, on its own backoff;
the others to that host wait, without sending, until the probe gets through (then they
all go) or gives up (then the next one probes). So an outage costs the dead host one
request per backoff step, not one per output, and once it is back every output is
delivered. A run whose outputs are still on their way is not finished.

On shutdown the deliveries still pending get the grace period, then stop: with a durable
journal they stay pending there (resent after the restart); without one they fail with
"executor shut down before the output was delivered".

Back pressure travels: a wiz-executor receiver says, on each AddData answer (200 or
429), how many more chunks it would accept now (`X-Wiz-Free-Room`: the executor's room,
`--max-pending` less its chunks waiting, for every run there alike; a run's own limits
are 409s, not a pace). Each host keeps that room, less the sends in flight since; a
sender takes one unit of it before it sends, and when none is left it waits instead of
sending into a 429. One sender then probes a full receiver after `pace` seconds (doubled
when the probe still met a 429, halved when the answer showed room to spare), so the
upstream runs at the receiver's speed: a slow run downstream slows its upstream, across
executors, without a storm of 429s. Until the first answer says whether the receiver
reports its room, one send at a time goes to a new host; a receiver that does not (the
Go executor) is sent to as before.

The sending chunk's ID doubles as an idempotency key: AddData is a no-op for a ChunkID
already held with the same content, so a retry after a lost answer cannot duplicate.

Each delivery carries `Authorization: Bearer TOKEN` when there is a token for its target:
the one given for the target's `host:port` (`--downstream-token`), else the executor's
own (the common case: a pipeline's runs on one executor, or on executors sharing a
token). A target with neither gets no Authorization header, as before.

With a durable journal (the journal's part, kept apart below): an output is sent only
once it is journalled, with its delivery pending (`RunMap.succeed` appends both, and
each send awaits `RunMap.flush` first); a delivery the shutdown cuts short stays pending in
the journal and is resent after the restart, rather than recorded as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Mapping
from time import monotonic
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from ._logs import about
from ._retrying import Backoff, parse_retry_after
from ._tls import CA_CERTS_HINT, verification_failure
from .api import DownstreamDataLocation
from .errors import JournalError, NetworkRefused
from .runs import Chunk, Run, RunMap
from .settings import host_key

log = logging.getLogger(__name__)

RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
FREE_ROOM = "x-wiz-free-room"
"""The receiver's answer header saying how many more chunks it would accept now."""
SHORTEST_PACE = 0.001
"""Seconds: the least a probe of a full receiver waits."""
SHUT_DOWN = "executor shut down before the output was delivered"
DELETED = "run was deleted before the output was delivered"


def location_url(loc: DownstreamDataLocation) -> str:
    host = loc.Hostname.rstrip("/")
    base = host if "://" in host else f"http://{host}"
    return f"{base}/processors/{quote(loc.ProcID, safe='')}/runs/{quote(loc.RunID, safe='')}/data"


class _Output:
    """One output on its way to some of its run's downstream locations."""

    __slots__ = ("chunk", "deadline", "errors", "interrupted", "left", "run")

    def __init__(self, run: Run, chunk: Chunk, left: int, deadline: float) -> None:
        self.run = run
        self.chunk = chunk
        self.left = left
        """Locations still to hear from."""
        self.deadline = deadline
        """When (monotonic) its delivery window ends."""
        self.errors: list[tuple[int, str]] = []
        self.interrupted = False
        """The shutdown cut a send short while the journal is durable: the delivery
        stays pending there, and is resent (to every location) after the restart."""
        """(location index, why) of each location it could not be delivered to."""


class _Send:
    """One output to one downstream location."""

    __slots__ = ("index", "loc", "output")

    def __init__(self, output: _Output, index: int, loc: DownstreamDataLocation) -> None:
        self.output = output
        self.index = index
        self.loc = loc


class _Host:
    """The deliveries to one downstream host: a queue, the senders draining it, and
    whether the host is down (then `prober` is the one sender that may try it); and
    the room its receiver reported (while none is left, `pacer` is the one sender that
    may send)."""

    __slots__ = (
        "changed",
        "down",
        "heard",
        "inflight",
        "last_error",
        "pace",
        "pacer",
        "prober",
        "queue",
        "room",
        "senders",
    )

    def __init__(self, pace: float = 0.1) -> None:
        self.queue: deque[_Send] = deque()
        self.senders: set[asyncio.Task[None]] = set()
        self.down = False
        self.prober: asyncio.Task[Any] | None = None
        self.last_error = ""
        self.changed = asyncio.Event()
        """Set (and replaced) when the host comes back up, its prober or pacer lets go,
        or it reports room."""
        self.heard = False
        """Whether it has answered yet (until then, one send at a time)."""
        self.room: int | None = None
        """Chunks it said it would accept (`X-Wiz-Free-Room`), less the sends since;
        None while it has not said (then its room does not limit the sends)."""
        self.inflight = 0
        """Sends posted and not answered yet."""
        self.pace = pace
        """Seconds a probe waits, when no room is left, before it sends."""
        self.pacer: asyncio.Task[Any] | None = None

    def signal(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class _GaveUp(Exception):
    """A delivery ends without another try (the run was deleted, or its window passed
    while another delivery probed the host): final, with this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Downstream:
    """Per downstream host, a queue of outputs to deliver and a few senders draining it."""

    def __init__(
        self,
        runs: RunMap,
        client: httpx.AsyncClient,
        attempts: int | None = None,
        backoff: float = 0.1,
        senders: int = 16,
        *,
        cap: float = 30.0,
        timeout: float = 3600.0,
        token: str | None = None,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.runs = runs
        self.client = client
        self.token = token
        """Sent to targets without a token of their own in `tokens`."""
        self.tokens = {host_key(host): value for host, value in (tokens or {}).items()}
        """Tokens by target `host:port` (lower case)."""
        self.timeout = timeout
        """Seconds an output may take to be delivered, from when it was queued."""
        self.policy = Backoff(
            first=backoff,
            cap=cap,
            attempts=attempts,
            deadline=timeout,
            longest_retry_after=timeout,
        )
        """How to retry one output at one location; its deadline is set per output to
        what is left of that output's window."""
        self._senders_max = senders
        self._hosts: dict[str, _Host] = {}
        self._encode = msgspec.json.Encoder().encode

    @property
    def _senders(self) -> set[asyncio.Task[None]]:
        """Every sender task, of every host."""
        return {task for host in self._hosts.values() for task in host.senders}

    def host_down(self, hostname: str) -> bool:
        """Whether deliveries to `hostname` (as in DownstreamLocations) are being probed."""
        host = self._hosts.get(host_key(hostname))
        return host is not None and host.down

    def deliver(self, run: Run, chunk: Chunk, locations: tuple[int, ...] | None = None) -> None:
        """Queue an output for delivery to its run's downstream locations (or, for a
        retry, to those numbered in `locations`); the run map already counts it as
        pending, and is told once it has been delivered everywhere or given up."""
        targets = run.configuration.ExecutorConfig.DownstreamLocations or []
        indices = range(len(targets)) if locations is None else locations
        output = _Output(run, chunk, len(indices), monotonic() + self.timeout)
        if not indices:
            self.runs.delivery_finished(run, chunk, None)
            return
        for index in indices:
            loc = targets[index]
            key = host_key(loc.Hostname)
            host = self._hosts.get(key)
            if host is None:
                host = self._hosts[key] = _Host(max(self.policy.first, SHORTEST_PACE))
            host.queue.append(_Send(output, index, loc))
            self._staff(host, 1)

    def _staff(self, host: _Host, wanted: int) -> None:
        """Start up to `wanted` more senders for `host`: one at most while it is down."""
        limit = 1 if host.down else self._senders_max
        while wanted > 0 and host.queue and len(host.senders) < limit:
            task = asyncio.create_task(self._send_loop(host))
            host.senders.add(task)
            task.add_done_callback(host.senders.discard)
            wanted -= 1

    async def _send_loop(self, host: _Host) -> None:
        me = asyncio.current_task()
        while True:
            # Leave the set now, not in a done-callback a loop pass later: an output
            # queued meanwhile would find the set full and get no sender. While the host
            # is down and another sender probes it, the queue waits for it to come up.
            if not host.queue or (host.down and host.prober not in (None, me)):
                host.senders.discard(me)
                return
            send = host.queue.popleft()
            if send.output.run.removed:  # deleted: its outputs are cancelled with it
                self._sent(send, None)
                continue
            error: str | None = SHUT_DOWN
            try:
                durable = self.runs.flush()  # journal: never send what is not journalled
                if durable is not None:
                    try:
                        await durable
                    except JournalError as exc:
                        error = f"the output could not be journalled, so was not sent: {exc}"
                        continue
                error = await self._send(host, send)
            finally:
                self._sent(send, error)

    def _sent(self, send: _Send, error: str | None) -> None:
        output = send.output
        if error is SHUT_DOWN and self.runs.durable:
            output.interrupted = True
        elif error is not None:
            loc = send.loc
            output.errors.append((send.index, f"{loc.Hostname} {loc.ProcID}/{loc.RunID}: {error}"))
        output.left -= 1
        if output.left:
            return
        run, chunk = output.run, output.chunk
        if output.interrupted:  # journal: pending there, resent after the restart
            self.runs.delivery_interrupted(run)
            return
        if not output.errors:
            self.runs.delivery_finished(run, chunk, None)
            return
        output.errors.sort()
        reason = "; ".join(text for _, text in output.errors)
        failed = tuple(index for index, _ in output.errors)
        self.runs.delivery_finished(run, chunk, reason, failed)
        log.warning(
            "output %s of run %s/%s not delivered downstream: %s",
            chunk.output_id,
            run.proc_id,
            run.run_id,
            reason,
            extra=about(run.proc_id, run.run_id, chunk.id),
        )

    def _headers(self, hostname: str) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        token = self.tokens.get(host_key(hostname), self.token)
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    async def _send(self, host: _Host, send: _Send) -> str | None:
        output = send.output
        run = output.run
        chunk = output.chunk
        message = {
            "ChunkID": chunk.output_id,
            "Format": chunk.out_format.value,
            "Type": "INPUT",
            "State": "WAITING",
            "RawData": chunk.out_raw,
            "FilesystemReference": {"Driver": chunk.out_driver, "Location": chunk.out_location},
            # Name the output the next run will make after that run, so that parallel
            # branches fed the same chunk never hand a join two outputs with one ID.
            "AssociatedChunkID": f"{chunk.output_id}-{send.loc.RunID}",
        }
        url = location_url(send.loc)
        headers = self._headers(send.loc.Hostname)
        try:
            body = self._encode(message)
        except (TypeError, ValueError) as exc:  # (outputs are checked to be JSON already)
            return f"cannot encode the output: {exc}"
        me = asyncio.current_task()
        remaining = output.deadline - monotonic()
        if remaining <= 0 and host.down:
            return self._window_passed(host, 0)
        policy = dataclasses.replace(self.policy, deadline=max(remaining, 0.001))
        tries = 0
        try:
            async for attempt in policy.retrying(_transient):
                with attempt:
                    paced: bool | None = None
                    while paced is None:  # (the host may go down while room is awaited)
                        await self._turn(host, output, tries)
                        if run.removed:  # deleted while retrying: stop, and let it go
                            return DELETED
                        paced = await self._take_room(host, output, tries)
                    tries += 1
                    resp = None
                    try:
                        resp = await self.client.post(url, content=body, headers=headers)
                    except httpx.TransportError as exc:
                        self._failing(host, _describe(exc))
                        raise
                    finally:
                        self._answered(host, resp, paced)
                    if resp.status_code >= 300:
                        refused = _Refused(resp)
                        if _transient(refused) is None:
                            self._up(host)  # it answers: up, though this run refuses
                        else:
                            self._failing(host, refused.text)
                        raise refused
                    self._up(host)
                    return None
        except NetworkRefused as exc:  # the policy's answer will not change: final
            return exc.message
        except httpx.TransportError as exc:
            untrusted = verification_failure(exc)
            if untrusted:
                return f"{untrusted}; {CA_CERTS_HINT} (when starting this executor)"
            last = _describe(exc)
        except _Refused as exc:
            if _transient(exc) is None:
                return exc.text
            last = exc.text
        except _GaveUp as exc:
            return exc.reason
        except Exception as exc:  # not an address httpx can send to: final
            return f"cannot send to {url}: {type(exc).__name__}: {exc}"
        finally:
            if host.prober is me:
                host.prober = None
                host.signal()
            if host.pacer is me:
                host.pacer = None
                host.signal()
        if self.policy.attempts is not None and tries >= self.policy.attempts:
            return f"gave up after {tries} attempts; last: {last}"
        return (
            f"gave up after {tries} attempts in the {self.timeout:g} s delivery window "
            f"(--delivery-timeout); last: {last}"
        )

    async def _turn(self, host: _Host, output: _Output, tries: int) -> None:
        """Wait, while the host is down and another delivery probes it, until it is up
        or the probe lets go (then this one probes). Ends the delivery (`_GaveUp`) when
        its window passes meanwhile or its run is deleted."""
        me = asyncio.current_task()
        while host.down and host.prober not in (None, me):
            if output.run.removed:
                raise _GaveUp(DELETED)
            remaining = output.deadline - monotonic()
            if remaining <= 0:
                raise _GaveUp(self._window_passed(host, tries))
            changed = host.changed
            # Woken by the host; also every backoff cap, to notice a deleted run.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, max(self.policy.cap, 0.1))):
                    await changed.wait()
        if host.down:
            host.prober = me

    async def _take_room(self, host: _Host, output: _Output, tries: int) -> bool | None:
        """Wait until the receiver has room for one more chunk, as far as it said, and
        take it. True if this send is a probe of a receiver that said it was full (sent
        after waiting `host.pace`, with no other send in flight), False for any other;
        None if the host went down meanwhile and another sender probes it (then wait
        for it with `_turn` first). While the host has not answered yet, one send at a
        time goes. The prober of a host that is down is not paced: it has waited its
        backoff already."""
        me = asyncio.current_task()
        paced = False
        while True:
            if host.down:
                if host.prober is not me:
                    return None
                break
            if host.heard and (host.room is None or host.room > 0):
                break
            if not host.heard and not host.inflight:
                break  # the first send to this host
            if paced:
                break  # the probe of a full receiver, after its wait
            if output.run.removed:
                raise _GaveUp(DELETED)
            remaining = output.deadline - monotonic()
            if remaining <= 0:
                raise _GaveUp(self._full_too_long(tries))
            if host.heard and not host.inflight and host.pacer in (None, me):
                host.pacer = me
                await asyncio.sleep(min(host.pace, remaining))
                paced = True
                continue
            changed = host.changed
            # Woken by an answer; also every backoff cap, to notice a deletion.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, max(self.policy.cap, 0.1))):
                    await changed.wait()
        host.inflight += 1
        if host.room is not None:
            host.room -= 1
        return paced

    def _answered(self, host: _Host, resp: httpx.Response | None, paced: bool) -> None:
        """A send is over (`resp` None: no answer): note the room the receiver reports,
        less the other sends still in flight, and wake the senders waiting for it."""
        host.inflight -= 1
        reported = None if resp is None else _room(resp)
        if resp is not None and not host.heard:
            host.heard = True
            host.signal()
        if reported is not None:
            host.room = reported - host.inflight
        elif resp is not None and resp.status_code < 300:
            host.room = None  # it does not say: its room does not limit the sends
        if paced and resp is not None:
            if resp.status_code == 429:
                host.pace = min(host.pace * 2, max(self.policy.cap, SHORTEST_PACE))
            elif reported is not None and reported > 1:
                host.pace = max(host.pace / 2, SHORTEST_PACE)
        if host.pacer is asyncio.current_task():
            host.pacer = None
            host.signal()
        elif host.room is None or host.room > 0 or not host.inflight:
            host.signal()  # (no room and nothing in flight: one of them may probe now)

    def _full_too_long(self, tries: int) -> str:
        return (
            f"gave up after {tries} attempts in the {self.timeout:g} s delivery window "
            "(--delivery-timeout): the receiver stayed full"
        )

    def _window_passed(self, host: _Host, tries: int) -> str:
        return (
            f"gave up after {tries} attempts in the {self.timeout:g} s delivery window "
            f"(--delivery-timeout): the host was down; last: {host.last_error}"
        )

    def _failing(self, host: _Host, error: str) -> None:
        """An attempt found the host down (a connection error, 5xx or 429)."""
        host.last_error = error
        if not host.down:
            host.down = True
            host.signal()

    def _up(self, host: _Host) -> None:
        """An attempt got an answer: the host is up; its waiting deliveries go now."""
        if host.down:
            host.down = False
            host.last_error = ""
            host.signal()
            self._staff(host, len(host.queue))

    async def close(self, grace: float) -> None:
        """Give pending deliveries `grace` seconds, then record the rest as undelivered."""
        deadline = monotonic() + grace
        while senders := self._senders:
            remaining = deadline - monotonic()
            if remaining > 0:
                await asyncio.wait(senders, timeout=remaining)
                continue
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
        for host in self._hosts.values():
            while host.queue:
                self._sent(host.queue.popleft(), SHUT_DOWN)


def _room(resp: httpx.Response) -> int | None:
    """The receiver's free room from its answer's `X-Wiz-Free-Room`; None if it does
    not say (or says something that is not a count)."""
    value = resp.headers.get(FREE_ROOM)
    if value is None:
        return None
    try:
        room = int(value)
    except ValueError:
        return None
    return room if room >= 0 else None


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_text(resp: httpx.Response) -> str:
    try:
        body: Any = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict) and isinstance(body.get("value"), str):
        return str(body["value"])
    return resp.text[:200]


class _Refused(Exception):
    """A downstream answered with an error status (retried or not, per `_transient`)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.status = resp.status_code
        self.text = f"HTTP {resp.status_code}: {_error_text(resp)}"
        self.retry_after = parse_retry_after(resp.headers.get("retry-after"))
        super().__init__(self.text)


def _transient(exc: Exception) -> float | None:
    """Downstream's rule: connection errors, timeouts and RETRIED_STATUS answers are
    worth another try (AddData is idempotent per ChunkID, so a resend is safe); any
    other answer is final, and so is a certificate this executor does not trust."""
    if isinstance(exc, httpx.TransportError):
        return None if verification_failure(exc) else 0.0
    if isinstance(exc, _Refused) and exc.status in RETRIED_STATUS:
        return exc.retry_after or 0.0
    return None
