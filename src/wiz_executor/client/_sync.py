"""`Client`: the blocking client. Every operation is a `Call` from `_operations`."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from .._tls import Verify, verify_context
from ..api import (
    AddDataResult,
    CancelResult,
    Configuration,
    Data,
    DataChunkState,
    DataSpec,
    EndOfInputResult,
    ExecutorLimits,
    Processor,
    RetryResult,
    Run,
    RunHistory,
    WorkModel,
)
from . import _operations as ops
from ._errors import EventsUnavailable
from ._events import Event, EventDecoder, sse_lines
from ._follow import STREAM_ERRORS, FollowPlan, is_finished
from ._retry import Answered, RetryPolicy
from ._state import DEFAULT_URL, Lifecycle, auth_headers

T = TypeVar("T")


class Client:
    """A blocking client of one executor.

    Use it as a context manager (or call `close()`); like httpx, a closed client cannot
    be used again. Requests answered 429 are retried after the server's `Retry-After`,
    as the `retry` policy allows (kept as `retry_policy`). Error answers raise the
    classes of `wiz_executor.errors`.
    `stream_idle` is how long `follow`/`wait` let an event stream stay silent before
    they read the run again. `verify` is what an https executor's certificate is checked
    against: True (the system's CAs), the path of a CA bundle trusted besides them, or an
    `ssl.SSLContext`; verification cannot be switched off with False.
    `token` is sent as `Authorization: Bearer TOKEN` on every
    request; by default it is `WIZ_TOKEN` from the environment, if set.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        stream_idle: float = 20.0,
        verify: Verify = True,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.retry_policy = retry or RetryPolicy()
        self.stream_idle = stream_idle
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers=auth_headers(headers, token),
            transport=transport,
            verify=verify_context(verify),
        )
        self._lifecycle = Lifecycle("Client")

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._lifecycle.enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._lifecycle.close():
            self._http.close()

    @property
    def closed(self) -> bool:
        return self._lifecycle.closed

    # -- the engine --------------------------------------------------------------------

    def _send(self, call: ops.Call[T]) -> T:
        self._lifecycle.check()
        try:
            for attempt in self.retry_policy.backoff.retrying_sync(self.retry_policy.transient):
                with attempt:
                    response = self._http.request(
                        call.method, call.path, content=call.body, headers=call.headers
                    )
                    if self.retry_policy.retryable(response):
                        raise Answered(response)
                    return call.result(response)
        except Answered as last:  # still full after every attempt: its error
            return call.result(last.response)
        raise AssertionError("the retry loop ends by returning or raising")

    @contextmanager
    def _stream(
        self, call: ops.Call[None], decoder: EventDecoder, read_timeout: float | None
    ) -> Iterator[Iterator[Event | None]]:
        """An open event stream, as an iterator of events (None for other lines)."""
        self._lifecycle.check()
        timeout = httpx.Timeout(self._timeout, read=read_timeout)
        headers = {"accept": "text/event-stream"}
        with self._http.stream(call.method, call.path, timeout=timeout, headers=headers) as resp:
            if not resp.is_success:
                resp.read()
                call.result(resp)
            yield (decoder.feed(line) for line in sse_lines(resp.iter_text()))

    # -- processors and runs -----------------------------------------------------------

    def processors(self) -> list[Processor]:
        """GetAllProcessors: every processor the executor serves."""
        return self._send(ops.processors())

    def processor(self, proc_id: str) -> Processor:
        """GetProcessor; ProcessorNotFound if the executor does not serve it."""
        return self._send(ops.processor(proc_id))

    def runs(self, proc_id: str) -> list[Run]:
        """GetAllRuns of a processor (an empty list when none)."""
        return self._send(ops.runs(proc_id))

    def run(self, proc_id: str, run_id: str) -> Run:
        """GetRun: the run's configuration, state and chunk counts."""
        return self._send(ops.run(proc_id, run_id))

    def why(self, proc_id: str, run_id: str, limit: int = 100) -> ops.RunWhy:
        """Why a run's chunks wait: the run (its `Waiting` reason and `FreeRoom`) and
        its first `limit` RUNNING chunks (since when each runs, its progress, `Slow`)."""
        run = self.run(proc_id, run_id)
        page = self._send(ops.data_page(proc_id, run_id, DataChunkState.RUNNING, limit))
        return ops.RunWhy(run, page.data.In)

    def config(self, proc_id: str, run_id: str) -> Configuration:
        """GetConfig: the configuration the run was created with."""
        return self._send(ops.config(proc_id, run_id))

    def configure(
        self, proc_id: str, run_id: str, configuration: Configuration | Mapping[str, Any]
    ) -> Run:
        """Configure: create the run (the same configuration again is a no-op)."""
        return self._send(ops.configure(proc_id, run_id, configuration))

    def change_config(
        self,
        proc_id: str,
        run_id: str,
        *,
        max_workers: int | None = None,
        chunk_timeout: float | None = None,
        work_model: WorkModel | str | None = None,
    ) -> Run:
        """Change a running run live (PATCH its config): the limits given change, the
        others stay; a new work model takes over once the old one's chunks in flight
        end. The run's `Warnings` say what was clamped or ignored."""
        return self._send(
            ops.change_config(proc_id, run_id, max_workers, chunk_timeout, work_model)
        )

    def pause(self, proc_id: str, run_id: str) -> Run:
        """Pause a run: none of its chunks starts until `resume` (running ones finish)."""
        return self._send(ops.pause(proc_id, run_id))

    def resume(self, proc_id: str, run_id: str) -> Run:
        """Resume a paused run: its waiting chunks start again."""
        return self._send(ops.resume(proc_id, run_id))

    def executor_limits(self) -> ExecutorLimits:
        """The executor-wide limits now (MaxWorkers, MaxPending)."""
        return self._send(ops.executor_limits())

    def set_executor_limits(
        self, *, max_workers: int | None = None, max_pending: int | None = None
    ) -> ExecutorLimits:
        """Change the executor-wide limits live (until the executor restarts)."""
        return self._send(ops.set_executor_limits(max_workers, max_pending))

    def delete(self, proc_id: str, run_id: str) -> Run:
        """Cancel a run's unfinished chunks and forget it; returns it as it was."""
        return self._send(ops.delete(proc_id, run_id))

    # -- data --------------------------------------------------------------------------

    def add_data(
        self, proc_id: str, run_id: str, data: ops.ChunkInput | Sequence[ops.ChunkInput]
    ) -> AddDataResult:
        """AddData: one chunk, or a list sent as one batch (accepted or rejected whole)."""
        return self._send(ops.add_data(proc_id, run_id, data))

    def data(self, proc_id: str, run_id: str) -> DataSpec:
        """GetData: the run's input chunks and their outputs, in arrival order."""
        return self._send(ops.data(proc_id, run_id))

    def iter_data(
        self,
        proc_id: str,
        run_id: str,
        *,
        state: DataChunkState | str | None = None,
        page_size: int = 1000,
    ) -> Iterator[DataSpec]:
        """GetData page by page (each a `DataSpec` of at most `page_size` chunks), in
        arrival order, optionally only the chunks in `state`; follows the `Link` header
        until the last page. Memory stays one page whatever the run holds."""
        call: ops.Call[ops.DataPage] | None = ops.data_page(proc_id, run_id, state, page_size)
        while call is not None:
            page = self._send(call)
            yield page.data
            call = page.next

    def input_chunk(self, proc_id: str, run_id: str, chunk_id: str) -> Data:
        return self._send(ops.chunk(proc_id, run_id, chunk_id, "input"))

    def output_chunk(self, proc_id: str, run_id: str, chunk_id: str) -> Data:
        """One output chunk, by its own ID (its input's AssociatedChunkID)."""
        return self._send(ops.chunk(proc_id, run_id, chunk_id, "output"))

    def end_of_input(self, proc_id: str, run_id: str) -> EndOfInputResult:
        """Declare that no more chunks will come; the run completes when those held finish."""
        return self._send(ops.end_of_input(proc_id, run_id))

    def retry(self, proc_id: str, run_id: str) -> RetryResult:
        """Queue a run's FAILED chunks again and resend its failed deliveries; says how
        many (0 and 0 when nothing had failed)."""
        return self._send(ops.retry(proc_id, run_id))

    def cancel(self, proc_id: str, run_id: str) -> CancelResult:
        """Stop a run early: end of input, and its WAITING chunks failed without
        running (running ones finish); says how many were cancelled."""
        return self._send(ops.cancel(proc_id, run_id))

    def history(self, proc_id: str, run_id: str) -> RunHistory:
        """A run's recent counts, sampled once a second by the executor (about the last
        ten minutes), oldest first."""
        return self._send(ops.history(proc_id, run_id))

    # -- following ---------------------------------------------------------------------

    def events(
        self, proc_id: str | None = None, run_id: str | None = None
    ) -> Generator[Event, None, None]:
        """The events of one run (until its `done`), or executor-wide without `run_id`
        (only `proc_id`'s, if given). Leaving the loop early closes the stream."""
        decoder = EventDecoder(proc_id, run_id)
        with self._stream(ops.events(proc_id, run_id), decoder, None) as items:
            for item in items:
                if item is not None:
                    yield item

    def follow(
        self, proc_id: str, run_id: str, timeout: float | None = None
    ) -> Generator[Run | Event, None, None]:
        """The run now, then its events as they happen, ending with the final `Run`.

        Uses the event stream when the executor has one and polls otherwise; raises
        TimeoutError after `timeout` seconds and RunNotFound if the run is deleted."""
        plan = FollowPlan(proc_id, run_id, timeout, self.stream_idle)
        while True:
            if plan.use_events:
                decoder = EventDecoder(proc_id, run_id)
                plan.new_stream()
                try:
                    with self._stream(
                        ops.events(proc_id, run_id), decoder, plan.read_timeout()
                    ) as items:
                        current = self.run(proc_id, run_id)
                        yield current
                        if is_finished(current):
                            return
                        for item in items:
                            if item is not None:
                                yield item
                            if plan.stream_over(item):
                                break
                            # Keepalives and events can keep every read short of
                            # its timeout: the deadline is checked per line too.
                            plan.check_deadline()
                except EventsUnavailable:
                    plan.use_events = False
                except STREAM_ERRORS:
                    pass  # a quiet or cut stream: read the run, then reopen
            current = self.run(proc_id, run_id)
            yield current
            if is_finished(current):
                return
            plan.check_deadline()
            delay = plan.next_delay()
            if delay:
                time.sleep(delay)

    def wait(self, proc_id: str, run_id: str, timeout: float | None = None) -> Run:
        """Block until the run is SUCCEEDED or ERRORED and return it."""
        final: Run | None = None
        for item in self.follow(proc_id, run_id, timeout):
            if isinstance(item, Run):
                final = item
        assert final is not None  # follow() always ends with the final Run
        return final
