"""`ls`: list a folder (or describe a file) inside the data directory or an allowed root.

Each entry is the original's FileInfo: `Name`, `Size`, `Mode` (Go's `os.FileMode` bits,
so consumers written for the Go executor read it unchanged), `ModTime` (RFC 3339, UTC,
nanoseconds) and `IsDir`, plus `ModeString` ("drwxr-xr-x") for people. Entries come in
name order, as Go's `os.ReadDir` gives them. Symlinks are described, never followed, so
a listing cannot wander out of the allowed folders or loop: the folder is opened through
the sandbox (no symlink swapped in since the check) and each sub-folder relative to its
parent's descriptor with `O_NOFOLLOW`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..api import DataFormat
from ..errors import ChunkFailed, InvalidConfiguration
from ._base import Context, Input, Limits, Output, Processor, ProcessorConfig, ceiling
from ._sandbox import OutsideSandbox, Sandbox

# Go's os.FileMode type bits (io/fs), for the `Mode` field.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20
GO_MODE_IRREGULAR = 1 << 19

PROGRESS_EVERY = 1000


class LsConfig(ProcessorConfig):
    Dir: str = Field(
        "",
        description="folder to list (relative paths start at the data directory); a "
        "chunk's FILESYSTEM_REF takes its place",
    )
    Recursive: bool = Field(False, description="list sub-folders too, with relative names")
    MaxEntries: int = Field(
        100_000,
        ge=0,
        description="fail rather than list more entries than this; 0 = the executor's "
        "--max-ls-entries, which a run may not exceed",
    )


class Ls(Processor[LsConfig]):
    """Lists `Dir`, or the folder or file a chunk's FILESYSTEM_REF points to."""

    id = "ls"
    name = "List a folder"
    version = "0.1.0"
    Config = LsConfig

    @classmethod
    def config_for_chunk(cls, run_config: BaseModel, raw_data: Any) -> BaseModel:
        if isinstance(raw_data, str):
            raw_data = {"Dir": raw_data}
        return super().config_for_chunk(run_config, raw_data)

    @classmethod
    def apply_limits(cls, config: BaseModel, limits: Limits) -> BaseModel:
        """`MaxEntries` within `--max-ls-entries`; a `Dir` outside the allowed folders
        is refused now, not chunk after chunk."""
        assert isinstance(config, LsConfig)
        if config.Dir:
            try:
                Sandbox(limits.data_dir, limits.allowed_roots).readable(config.Dir, "Dir")
            except OutsideSandbox as exc:
                raise InvalidConfiguration(
                    f"Processor.Dir: {exc.message}; processors read only there (the "
                    "executor's --allow-root adds folders)"
                ) from None
            except ChunkFailed as exc:
                raise InvalidConfiguration(f"Processor.Dir: {exc.message}") from None
        limit = ceiling(config, "MaxEntries", limits.max_ls_entries, "--max-ls-entries")
        return config.model_copy(update={"MaxEntries": limit})

    def run(self, data: Input, context: Context[LsConfig]) -> Output:
        config = context.config
        sandbox = Sandbox.of(context)
        if data.format is DataFormat.FILESYSTEM_REF:
            path = sandbox.reference(data.driver, data.location)
        elif config.Dir:
            path = sandbox.readable(config.Dir, "Dir")
        else:
            raise ChunkFailed(
                "ls needs a folder: set Dir in the configuration or the chunk's RawData, "
                "or send a FILESYSTEM_REF chunk"
            )
        handle = sandbox.open_fd(path, os.O_PATH)
        try:
            st = os.fstat(handle)
            if not stat.S_ISDIR(st.st_mode):
                return Output.raw([file_info(path.name, st)])
            lister = _Lister(config.MaxEntries, context)
            lister.walk(_open_folder(".", handle, path), path, "", config.Recursive)
        finally:
            os.close(handle)
        return Output.raw(lister.entries)


def _open_folder(name: str, parent: int, shown: Path) -> int:
    """A sub-folder opened for listing relative to its parent's descriptor, never
    through a symlink. FileNotFoundError passes: the folder was removed meanwhile."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        raise
    except PermissionError:
        raise ChunkFailed(f"{shown}: permission denied") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ChunkFailed(
                f"{shown} changed while it was listed: a symlink or a file now stands "
                "where the folder was"
            ) from None
        raise ChunkFailed(f"{shown}: {exc.strerror}") from None


class _Lister:
    def __init__(self, limit: int, context: Context[LsConfig]) -> None:
        self.limit = limit
        self.context = context
        self.entries: list[dict[str, Any]] = []

    def walk(self, fd: int, folder: Path, prefix: str, recursive: bool) -> None:
        """List the open folder `fd` (shown as `folder`), then close it."""
        try:
            try:
                with os.scandir(fd) as it:
                    items = sorted(it, key=lambda e: e.name)
            except PermissionError:
                raise ChunkFailed(f"{folder}: permission denied") from None
            for entry in items:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while we listed
                name = prefix + entry.name
                self._add(file_info(name, st))
                if recursive and stat.S_ISDIR(st.st_mode):
                    try:
                        sub = _open_folder(entry.name, fd, folder / entry.name)
                    except FileNotFoundError:
                        continue  # removed while we listed
                    self.walk(sub, folder / entry.name, name + "/", recursive)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _add(self, info: dict[str, Any]) -> None:
        self.entries.append(info)
        count = len(self.entries)
        if self.limit and count > self.limit:
            raise ChunkFailed(
                f"the listing has more than MaxEntries={self.limit} entries; raise MaxEntries "
                "or list a smaller folder"
            )
        if count % PROGRESS_EVERY == 0:
            self.context.report_progress(count, None)


def file_info(name: str, st: os.stat_result) -> dict[str, Any]:
    """The original's FileInfo for one entry (from `lstat`)."""
    is_dir = stat.S_ISDIR(st.st_mode)
    return {
        "Name": name,
        "Size": st.st_size,
        "Mode": go_file_mode(st.st_mode),
        "ModeString": stat.filemode(st.st_mode),
        "ModTime": rfc3339_nano(st.st_mtime_ns),
        "IsDir": is_dir,
    }


def go_file_mode(mode: int) -> int:
    """A Unix st_mode as Go's os.FileMode: permission bits plus Go's own type bits."""
    out = stat.S_IMODE(mode) & 0o777
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFDIR:
        out |= GO_MODE_DIR
    elif kind == stat.S_IFLNK:
        out |= GO_MODE_SYMLINK
    elif kind == stat.S_IFIFO:
        out |= GO_MODE_NAMED_PIPE
    elif kind == stat.S_IFSOCK:
        out |= GO_MODE_SOCKET
    elif kind == stat.S_IFCHR:
        out |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif kind == stat.S_IFBLK:
        out |= GO_MODE_DEVICE
    elif kind != stat.S_IFREG:
        out |= GO_MODE_IRREGULAR
    if mode & stat.S_ISUID:
        out |= GO_MODE_SETUID
    if mode & stat.S_ISGID:
        out |= GO_MODE_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_MODE_STICKY
    return out


def rfc3339_nano(ns: int) -> str:
    """A time as Go's time.Time marshals it to JSON (RFC 3339 with nanoseconds), in UTC."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{nanos:09d}".rstrip("0").rstrip(".")
    return f"{base}{fraction}Z"
