"""Sending finished outputs to the next run, with bounded retries and backoff.

Each SUCCEEDED output of a run with `SendDownstream` goes, as an INPUT chunk whose
ChunkID is the output's ID, to run `RunID` of processor `ProcID` at every
`DownstreamLocations[].Hostname`, asking that run to name its output
`{ChunkID}-{RunID}` (so outputs of parallel branches never share an ID at a join).
Connection errors, 5xx and 429 are retried under the project's one retry policy
(`wiz_executor._retrying`): exponential backoff, or the Retry-After (seconds or an
HTTP-date) when longer, at most 30 s; other 4xx answers are final. A delivery
that finally fails is recorded on the output chunk (`DeliveryError`), logged, and makes
the run ERRORED: an output is never dropped silently. Deleting a run cancels its
deliveries still queued or being retried.

The sending chunk's ID doubles as an idempotency key: AddData is a no-op for a ChunkID
already held with the same content, so a retry after a lost answer cannot duplicate.

With a durable journal (the journal's part, kept apart below): an output is sent only
once it is journalled, with its delivery pending (`RunMap.succeed` appends both, and the
sender awaits `RunMap.flush` first); a delivery the shutdown cuts short stays pending in
the journal and is resent after the restart, rather than recorded as failed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from ._retrying import Backoff, parse_retry_after
from .api import DownstreamDataLocation
from .runs import Chunk, Run, RunMap

log = logging.getLogger(__name__)

RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
_SHUT_DOWN = "executor shut down before the output was delivered"
MAX_BACKOFF = 30.0


def location_url(loc: DownstreamDataLocation) -> str:
    host = loc.Hostname.rstrip("/")
    base = host if "://" in host else f"http://{host}"
    return f"{base}/processors/{quote(loc.ProcID, safe='')}/runs/{quote(loc.RunID, safe='')}/data"


class Downstream:
    """A queue of outputs to deliver and a few sender tasks draining it."""

    def __init__(
        self,
        runs: RunMap,
        client: httpx.AsyncClient,
        attempts: int = 5,
        backoff: float = 0.1,
        senders: int = 16,
    ) -> None:
        self.runs = runs
        self.client = client
        self.policy = Backoff(first=backoff, cap=MAX_BACKOFF, attempts=attempts)
        """When to give up on a delivery: today a number of attempts; riding out a long
        outage is `Backoff(attempts=None, deadline=...)`."""
        self._senders_max = senders
        self._queue: asyncio.Queue[tuple[Run, Chunk]] = asyncio.Queue()
        self._senders: set[asyncio.Task[None]] = set()
        self._encode = msgspec.json.Encoder().encode

    def deliver(self, run: Run, chunk: Chunk) -> None:
        """Queue an output for delivery (the run map already counts it as pending)."""
        self._queue.put_nowait((run, chunk))
        if len(self._senders) < self._senders_max:
            task = asyncio.create_task(self._send_loop())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _send_loop(self) -> None:
        while True:
            try:
                run, chunk = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                # Leave the set now, not in a done-callback a loop pass later: an
                # output queued meanwhile would find the set full and get no sender.
                self._senders.discard(asyncio.current_task())
                return
            if run.removed:  # deleted: its outputs are cancelled with it
                self.runs.delivery_finished(run, chunk, None)
                continue
            error: str | None = _SHUT_DOWN
            try:
                durable = self.runs.flush()  # journal: never send what is not journalled
                if durable is not None:
                    await durable
                error = await self._deliver(run, chunk)
            finally:
                if error is _SHUT_DOWN and self.runs.durable:  # journal: resent after restart
                    self.runs.delivery_interrupted(run)
                    error = None
                else:
                    self.runs.delivery_finished(run, chunk, error)
                if error:
                    log.warning(
                        "output %s of run %s/%s not delivered downstream: %s",
                        chunk.output_id,
                        run.proc_id,
                        run.run_id,
                        error,
                    )

    async def _deliver(self, run: Run, chunk: Chunk) -> str | None:
        chunk_id = chunk.output_id
        message = {
            "ChunkID": chunk_id,
            "Format": chunk.out_format.value,
            "Type": "INPUT",
            "State": "WAITING",
            "RawData": chunk.out_raw,
            "FilesystemReference": {"Driver": chunk.out_driver, "Location": chunk.out_location},
            "AssociatedChunkID": "",
        }
        errors = []
        for loc in run.configuration.ExecutorConfig.DownstreamLocations or ():
            # Name the output the next run will make after that run, so that parallel
            # branches fed the same chunk never hand a join two outputs with one ID.
            message["AssociatedChunkID"] = f"{chunk_id}-{loc.RunID}"
            error = await self._send(run, location_url(loc), self._encode(message))
            if error:
                errors.append(f"{loc.Hostname} {loc.ProcID}/{loc.RunID}: {error}")
        return "; ".join(errors) or None

    async def _send(self, run: Run, url: str, body: bytes) -> str | None:
        tries = 0
        try:
            async for attempt in self.policy.retrying(_transient):
                with attempt:
                    if run.removed:  # deleted while retrying: stop, and let go of its memory
                        return "run was deleted before the output was delivered"
                    tries = attempt.retry_state.attempt_number
                    resp = await self.client.post(
                        url, content=body, headers={"content-type": "application/json"}
                    )
                    if resp.status_code >= 300:
                        raise _Refused(resp)
                    return None
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except _Refused as exc:
            if _transient(exc) is None:
                return exc.text
            last = exc.text
        except Exception as exc:  # not an address httpx can send to: final
            return f"cannot send to {url}: {type(exc).__name__}: {exc}"
        return f"gave up after {tries} attempts; last: {last}"

    async def close(self, grace: float) -> None:
        """Give queued deliveries `grace` seconds, then record the rest as undelivered."""
        if self._senders:
            _, late = await asyncio.wait(set(self._senders), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        while not self._queue.empty():
            run, chunk = self._queue.get_nowait()
            if self.runs.durable:  # journal: pending there, resent after the restart
                self.runs.delivery_interrupted(run)
                continue
            self.runs.delivery_finished(
                run, chunk, "executor shut down before the output was delivered"
            )


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
    other answer is final."""
    if isinstance(exc, httpx.TransportError):
        return 0.0
    if isinstance(exc, _Refused) and exc.status in RETRIED_STATUS:
        return exc.retry_after or 0.0
    return None
