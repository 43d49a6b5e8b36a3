"""The threads processors' blocking `run` calls run on, and the ones they got stuck in.

Python cannot stop a thread. When a blocking `run` times out (or its chunk is cancelled
by delete or shutdown) its thread keeps running the call until the call returns, if it
ever does. In a `ThreadPoolExecutor` of `--max-workers` threads such a thread still
counts as one of the pool's, so two hung calls on a two-thread pool made every later
chunk time out waiting for a thread. Here the executor tracks each call: a call nobody
waits for any more is *abandoned*, its thread leaves the pool (a new thread takes its
place at once) and is counted apart until the call returns; then the thread ends, and
what the call returned is dropped (its chunk has already failed, its instance has
already been discarded).

Stuck threads are bounded: once `max_abandoned` of them are stuck (4 times `--max-workers`
by default), a processor that has stuck threads gets its blocking chunks failed at once
with a message saying so, instead of a new thread per chunk for a processor that hangs
on every one; other processors go on running. Its chunks run again as soon as its
threads come back below the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from queue import SimpleQueue
from typing import Any

log = logging.getLogger(__name__)

_QUEUED, _RUNNING, _DONE, _DROPPED, _ABANDONED = range(5)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # cancelled meanwhile: nobody wants it
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _hand_back(
    call: BlockingCall, setter: Callable[[asyncio.Future[Any], Any], None], value: Any
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
        call.loop.call_soon_threadsafe(setter, call.future, value)


class BlockingCall:
    """One blocking call handed to `ProcessorThreads`; await it for its result."""

    __slots__ = ("args", "fn", "future", "loop", "owner", "state")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        owner: type,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.args = args
        self.owner = owner
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.state = _QUEUED

    def __await__(self) -> Generator[Any, None, Any]:
        return self.future.__await__()


class ProcessorThreads:
    """`size` threads that run blocking calls, plus the threads stuck in abandoned ones.

    Threads start as calls need them (as in `ThreadPoolExecutor`) and are daemons, so a
    call stuck for ever cannot keep the process from exiting.
    """

    def __init__(
        self, size: int, max_abandoned: int | None = None, name: str = "wiz-processor"
    ) -> None:
        if size < 1:
            raise ValueError(f"{name}: at least one thread is needed, not {size}")
        self.size = size
        self._derived = max_abandoned is None
        self.max_abandoned = 4 * size if max_abandoned is None else max_abandoned
        """Stuck threads past which a processor with stuck threads gets no new ones."""
        self.name = name
        self.abandoned = 0
        """Threads still running a call that was abandoned (timed out or cancelled)."""
        self.stuck: dict[type, int] = {}
        """Of those, how many each processor class holds."""
        self._queue: SimpleQueue[BlockingCall | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Semaphore(0)
        self._threads = 0
        self._started = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads taking calls now (not counting the abandoned ones)."""
        return self._threads

    def refusal(self, owner: type) -> str | None:
        """Why `owner`'s next blocking call must not start, or None when it may."""
        if self.abandoned < self.max_abandoned:
            return None
        mine = self.stuck.get(owner, 0)
        if not mine:
            return None
        name = getattr(owner, "id", owner.__name__)
        return (
            f"{mine} threads of processor {name!r} are still stuck in `run` after their "
            f"chunks timed out or were cancelled, and the executor holds {self.abandoned} "
            f"such threads (its limit is {self.max_abandoned}); this processor's chunks "
            "fail until its threads return"
        )

    def resize(self, size: int) -> None:
        """Change how many threads take calls (the executor-wide limit changed live):
        more start as calls need them; above a lowered size, idle threads stay idle."""
        if size < 1:
            raise ValueError(f"{self.name}: at least one thread is needed, not {size}")
        with self._lock:
            self.size = size
            if self._derived:
                self.max_abandoned = 4 * size

    def call(self, owner: type, fn: Callable[..., Any], *args: Any) -> BlockingCall:
        """Queue `fn(*args)` for a thread; await the result to get what it returned."""
        if self._closed:
            raise RuntimeError(f"{self.name}: the threads are shut down")
        call = BlockingCall(fn, args, owner, asyncio.get_running_loop())
        self._queue.put(call)
        if not self._idle.acquire(blocking=False):  # no thread is free: start one
            with self._lock:
                if self._threads < self.size:
                    self._start_thread()
        return call

    def abandon(self, call: BlockingCall) -> None:
        """Nobody waits for `call` any more (it timed out, or its chunk was cancelled).

        Not started yet: it never will be. Running: its thread leaves the pool, counted
        as abandoned until the call returns, and a new thread takes its place now.
        """
        with self._lock:
            if call.state == _QUEUED:
                call.state = _DROPPED
            elif call.state == _RUNNING:
                call.state = _ABANDONED
                self.abandoned += 1
                self.stuck[call.owner] = self.stuck.get(call.owner, 0) + 1
                self._threads -= 1
                if not self._closed:
                    self._start_thread()
                log.warning(
                    "a blocking call of processor %s is still running after its chunk "
                    "ended; its thread is replaced (%d stuck threads)",
                    getattr(call.owner, "id", call.owner.__name__),
                    self.abandoned,
                )

    def close(self) -> None:
        """Let the threads end once the calls they run return; queued calls never start."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)

    def _start_thread(self) -> None:  # with the lock held
        self._threads += 1
        self._started += 1
        thread = threading.Thread(
            target=self._work, name=f"{self.name}_{self._started}", daemon=True
        )
        thread.start()

    def _work(self) -> None:
        queue, lock = self._queue, self._lock
        while True:
            call = queue.get()
            if call is None:
                return
            with lock:
                if call.state != _QUEUED:  # abandoned before it started
                    self._idle.release()
                    continue
                call.state = _RUNNING
            try:
                result = call.fn(*call.args)
            except BaseException as exc:  # handed to the awaiting task, as run_in_executor does
                with lock:
                    if self._finish(call):
                        return
                _hand_back(call, _set_exception, exc)
            else:
                with lock:
                    if self._finish(call):
                        return
                _hand_back(call, _set_result, result)
            if self._closed:
                return
            self._idle.release()

    def _finish(self, call: BlockingCall) -> bool:  # with the lock held
        """Record that `call` returned; True when its thread was abandoned and must end
        (another took its place), its result dropped."""
        if call.state == _ABANDONED:
            self.abandoned -= 1
            left = self.stuck[call.owner] - 1
            if left:
                self.stuck[call.owner] = left
            else:
                del self.stuck[call.owner]
            return True
        call.state = _DONE
        return False
