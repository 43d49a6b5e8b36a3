"""Where processors may read and write: the data directory and the allow-listed roots.

Paths reach processors from users (a `Dir`, a `file://` URL, a FILESYSTEM_REF). Each is
resolved the way the kernel would follow it, symlinks included, and accepted only if the
result lies inside the executor's data directory or one of the roots allowed at start-up
(`wiz executor --allow-root PATH`). So `..`, absolute paths elsewhere and symlinks that
lead out are all refused, each with a message that says which rule the path broke.

Reading may use any allowed root; writing is confined to the data directory alone,
and no writer but `git` may make a file or folder named `.git` there: git follows a
`.git` file (`gitdir: ELSEWHERE`) to any repository on the host, so a planted one would
turn a clone of a folder inside into a clone of one outside. This module is the one
place those rules live, so a reviewer can check them at a glance.

A check of a path and its later opening are two steps, and the tree may change in
between (a folder swapped for a symlink that leads out). So files are opened with
`open_fd`/`open_checked`, which walk the already checked real path one component at a
time from the root's folder, relative to each folder's descriptor with `O_NOFOLLOW`:
what is opened is what was checked, or the open fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from ..errors import ChunkFailed
from ._base import Context


class OutsideSandbox(ChunkFailed):
    """A path resolves outside the folders processors may use."""


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

    def writable(self, user_path: str | Path, what: str = "path", *, git: bool = False) -> Path:
        """Like `readable`, but only the data directory counts: writes never leave it.
        Nor may they make a `.git` file or folder (see `is_git_name`), unless `git`:
        only the git processor writes those, into clones it made itself."""
        real = self._check(user_path, (self.data_dir,), what)
        if not git:
            for part in real.relative_to(self.data_dir).parts:
                if is_git_name(part):
                    raise ChunkFailed(
                        f"{what} {str(user_path)!r} would write {part!r} into the data "
                        "directory; only the git processor may write .git files or folders"
                    )
        return real

    # -- opening what was checked ------------------------------------------------------

    def open_fd(
        self, real: Path, flags: int = os.O_RDONLY, mode: int = 0o644, *, write: bool = False
    ) -> int:
        """Open `real` (a path `readable`/`writable` returned) and return the descriptor.

        The path is walked from the root it lies in, one component at a time, each
        opened relative to the previous folder's descriptor with `O_NOFOLLOW`: a
        symlink swapped into the path since it was checked makes the open fail rather
        than lead out. `flags` apply to the last component (`os.O_PATH` opens it
        without reading, for `fstat` or as a `dir_fd`); `write` walks from the data
        directory alone.
        """
        roots = (self.data_dir,) if write else self.roots
        inside = [root for root in roots if real.is_relative_to(root)]
        if not inside:
            raise OutsideSandbox(f"{real} is outside {_describe(roots)}")
        root = max(inside, key=lambda r: len(r.parts))
        parts = real.relative_to(root).parts
        walk = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _open_error(real, exc) from None
        try:
            for name in parts[:-1]:
                folder = os.open(name, walk, dir_fd=fd)
                os.close(fd)
                fd = folder
            last = parts[-1] if parts else "."
            opened = os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
        except OSError as exc:
            raise _open_error(real, exc) from None
        finally:
            os.close(fd)
        if flags & os.O_PATH and stat.S_ISLNK(os.fstat(opened).st_mode):
            os.close(opened)  # O_PATH|O_NOFOLLOW opens a symlink itself, without error
            raise _open_error(real, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))
        return opened

    def open_checked(self, real: Path) -> BinaryIO:
        """`real` (a path `readable` returned) opened for reading, as `open_fd` opens it.
        Non-blocking, so a FIFO does not hang the open; callers refuse what is not a
        regular file."""
        fd = self.open_fd(real, os.O_RDONLY | os.O_NONBLOCK)
        return os.fdopen(fd, "rb")

    def replace(self, source: Path, target: Path) -> None:
        """Rename `source` to `target`, both checked names in one folder of the data
        directory, relative to that folder's descriptor (walked as `open_fd` walks)."""
        if source.parent != target.parent:
            raise ValueError("replace renames within one folder")
        fd = self.open_fd(source.parent, os.O_PATH | os.O_DIRECTORY, write=True)
        try:
            os.replace(source.name, target.name, src_dir_fd=fd, dst_dir_fd=fd)
        finally:
            os.close(fd)

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
            raise OutsideSandbox(
                f"{what} {text!r} goes through a symlink that leads outside {where} "
                f"(to {real}); symlinks may not escape"
            )
        raise OutsideSandbox(f"{what} {text!r} resolves to {real}, outside {where}")

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


def _open_error(real: Path, exc: OSError) -> ChunkFailed:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return ChunkFailed(
            f"{real} changed after it was checked: a symlink (or a file where a folder "
            "was) now stands in its path; symlinks may not be swapped in"
        )
    if exc.errno == errno.ENOENT:
        return ChunkFailed(f"{real}: no such file or folder")
    return ChunkFailed(f"{real}: {exc.strerror}")


def is_git_name(name: str) -> bool:
    """Whether git would take `name` for `.git`: any case, with the trailing dots and
    spaces Windows and macOS file systems drop, or the 8.3 short name `git~1`."""
    folded = name.casefold().rstrip(". ")
    return folded in (".git", "git~1")


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
    if is_git_name(name):
        raise ValueError(f"{what} {name!r} names a .git file; only the git processor writes those")
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
