"""Writing a download to disk from async code without blocking the event loop.

Each block goes to a worker thread (`os.pwrite` at its offset, so concurrent ranged
parts can share one file), and at most one write per writer is in flight, so memory
stays at a few blocks whatever the file size. Cancellation never leaves a thread
writing into a file that is being closed or deleted: `close` waits for the writes that
were already handed to threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


class BlockFile:
    """A file opened for writing by offset; safe to share between concurrent writers."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._in_flight: set[asyncio.Future[Any]] = set()

    @classmethod
    async def create(
        cls,
        path: Path,
        size: int | None = None,
        opener: Callable[[Path, int], int] | None = None,
    ) -> BlockFile:
        """Create (or truncate) `path`, pre-sized to `size` bytes when it is known. A
        symlink at `path` is refused (O_NOFOLLOW): writes go where the sandbox checked.
        `opener(path, flags)` opens it instead of `os.open` (the sandbox's `open_fd`,
        which refuses a symlink anywhere in the path)."""

        def open_file() -> int:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = opener(path, flags) if opener is not None else os.open(path, flags, 0o644)
            if size:
                os.ftruncate(fd, size)
            return fd

        return cls(path, await asyncio.to_thread(open_file))

    async def write_at(self, data: bytes, offset: int, hasher: Any = None) -> None:
        """Write `data` at `offset` (and feed `hasher`, in the same thread)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, _pwrite_all, self._fd, data, offset, hasher)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        # Shielded: if the caller is cancelled, the write still ends before `close`.
        await asyncio.shield(future)

    async def truncate(self, size: int) -> None:
        await self._settle()
        await asyncio.to_thread(os.ftruncate, self._fd, size)

    async def close(self) -> None:
        await self._settle()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            await asyncio.to_thread(os.close, fd)

    async def _settle(self) -> None:
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))


def _pwrite_all(fd: int, data: bytes, offset: int, hasher: Any) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
    if hasher is not None:
        hasher.update(data)


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in blocks (blocking: call from a thread)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()
