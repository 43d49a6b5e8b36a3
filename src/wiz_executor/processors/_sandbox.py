"""Where processors may read and write: the data directory and the allow-listed roots.

Paths reach processors from users (a `Dir`, a `file://` URL, a FILESYSTEM_REF). Each is
resolved the way the kernel would follow it, symlinks included, and accepted only if the
result lies inside the executor's data directory or one of the roots allowed at start-up
(`wiz executor --allow-root PATH`). So `..`, absolute paths elsewhere and symlinks that
lead out are all refused, each with a message that says which rule the path broke.

Reading may use any allowed root; writing is confined to the data directory alone.
This module is the one place that rule lives, so a reviewer can check it at a glance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ChunkFailed
from ._base import Context


class Sandbox:
    """The roots a processor's file access must stay inside, resolved once per chunk."""

    __slots__ = ("data_dir", "roots")

    def __init__(self, data_dir: Path, allowed_roots: tuple[Path, ...] = ()) -> None:
        self.data_dir = Path(os.path.realpath(data_dir))
        roots = [self.data_dir]
        for root in allowed_roots:
            real = Path(os.path.realpath(root))
            if real not in roots:
                roots.append(real)
        self.roots: tuple[Path, ...] = tuple(roots)

    @classmethod
    def of(cls, context: Context[Any]) -> Sandbox:
        return cls(context.data_dir, context.allowed_roots)

    # -- checks ------------------------------------------------------------------------

    def readable(self, user_path: str | Path, what: str = "path") -> Path:
        """The real path of `user_path` (relative ones start at the data directory), if it
        lies inside the data directory or an allowed root; `ChunkFailed` otherwise."""
        return self._check(user_path, self.roots, what)

    def writable(self, user_path: str | Path, what: str = "path") -> Path:
        """Like `readable`, but only the data directory counts: writes never leave it."""
        return self._check(user_path, (self.data_dir,), what)

    def _check(self, user_path: str | Path, roots: tuple[Path, ...], what: str) -> Path:
        text = str(user_path)
        if not text:
            raise ChunkFailed(f"{what} is empty")
        if "\x00" in text:
            raise ChunkFailed(f"{what} {text!r} contains a NUL byte")
        path = Path(text)
        if not path.is_absolute():
            path = self.data_dir / path
        lexical = Path(os.path.normpath(path))
        real = Path(os.path.realpath(path))
        if any(real.is_relative_to(root) for root in roots):
            return real
        where = _describe(roots)
        if any(lexical.is_relative_to(root) for root in roots):
            raise ChunkFailed(
                f"{what} {text!r} goes through a symlink that leads outside {where} "
                f"(to {real}); symlinks may not escape"
            )
        raise ChunkFailed(f"{what} {text!r} resolves to {real}, outside {where}")

    # -- helpers for common inputs -----------------------------------------------------

    def file_url_path(self, url: str, what: str = "URL") -> Path:
        """The checked local path of a `file://` URL (host empty or `localhost`)."""
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise ChunkFailed(f"{what} {url!r} is not a file:// URL")
        if parts.netloc not in ("", "localhost"):
            raise ChunkFailed(
                f"{what} {url!r} names host {parts.netloc!r}; file:// URLs must be local"
            )
        return self.readable(unquote(parts.path), what)

    def reference(self, driver: str, location: str, what: str = "FILESYSTEM_REF") -> Path:
        """The checked path of a chunk's FilesystemReference."""
        if driver not in ("local", ""):
            raise ChunkFailed(
                f"{what} has Driver {driver!r}; this executor only reads Driver 'local'"
            )
        if not location:
            raise ChunkFailed(f"{what} has an empty Location")
        return self.readable(location, f"{what} Location")


def _describe(roots: tuple[Path, ...]) -> str:
    if len(roots) == 1:
        return f"the data directory {roots[0]}"
    others = ", ".join(str(r) for r in roots[1:])
    return f"the data directory {roots[0]} and the allowed roots ({others})"


def plain_file_name(name: str, what: str = "FileName") -> str:
    """`name` if it is one plain path component; refuses separators, `.`, `..` and NUL."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"{what} {name!r} must be a plain file name: no '/', no '..', not empty")
    if len(name.encode()) > 255:
        raise ValueError(f"{what} is longer than 255 bytes")
    return name


def remove_quietly(path: Path) -> None:
    """Remove a partial result (file or folder); what is already gone is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def remove_if_empty(folder: Path) -> None:
    """Remove a chunk's scratch folder if a failure left it empty. Its parents (the
    run's folder) stay: another chunk of the run may be creating its own folder there."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def _remove_result(path: Path, folder: Path) -> None:
    remove_quietly(path)
    remove_if_empty(folder)


@contextlib.asynccontextmanager
async def partial_result(path: Path, folder: Path, limit: float, what: str) -> AsyncIterator[None]:
    """Make `path` (in the chunk's `folder`) within `limit` seconds (0 = no limit).

    On any failure, cancellation included, the partial `path` is removed, and `folder`
    too if that leaves it empty: a failed chunk leaves nothing behind. Running out of
    time fails the chunk saying so; only our own deadline counts as that, not an OS
    call that timed out inside.
    """
    try:
        async with asyncio.timeout(limit or None) as deadline:
            yield
    except BaseException as exc:
        await asyncio.shield(asyncio.to_thread(_remove_result, path, folder))
        if isinstance(exc, TimeoutError) and deadline.expired():
            raise ChunkFailed(f"{what} did not finish within Timeout={limit:g} s") from None
        raise
