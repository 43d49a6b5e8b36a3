"""`get`: download a URL to a file in the data directory, streaming, with its state.

The body goes to disk block by block (memory stays constant whatever the size), into a
`.part` file that is renamed only when the download is complete and checked, and that
is removed on any failure. The output is a FILESYSTEM_REF to the file, and its RawData
records what was downloaded (ETag, Last-Modified, Content-Length, SHA-256 of the bytes
written) so a pipeline can tell later whether the source has changed.

Transient failures are retried with backoff; a GET that broke off part-way resumes
with a Range request when the server supports it (and the ETag still matches). With
`Concurrent.Enabled`, a server that advertises `Accept-Ranges: bytes` is read in
`Concurrent.Num` ranged parts at once, written at their offsets into one file: the
result is the same bytes, checked by every part's Content-Range and ETag.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any, BinaryIO, Literal
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import AliasChoices, BaseModel, Field, field_validator

from ..errors import ChunkFailed
from ._base import Context, Input, Limits, Output, Processor, ProcessorConfig, ceiling
from ._files import BlockFile, sha256_of
from ._http import (
    FetchError,
    first_error,
    make_client,
    status_error,
    transport_error,
    with_retries,
)
from ._http import http_date as _http_date
from ._sandbox import Sandbox, is_git_name, partial_result, plain_file_name

BLOCK = 512 * 1024
"""Bytes handed to the disk at a time: the download's whole memory footprint."""

MIN_PART = 256 * 1024
"""Smallest ranged part worth its own request."""

IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ConcurrentConfig(ProcessorConfig):
    Enabled: bool = Field(False, description="download in ranged parts at once when possible")
    Num: int = Field(4, ge=1, le=32, description="ranged parts (connections) at once")


class GetConfig(ProcessorConfig):
    URL: str = Field(
        "",
        validation_alias=AliasChoices("URL", "Source"),
        description="what to download: http://, https://, or file:// inside the allowed "
        "folders (`Source`, the original's go-getter field, is accepted too)",
    )
    Method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    Headers: dict[str, str] = Field(default_factory=dict, description="request headers")
    Body: str | dict[str, Any] | list[Any] | None = Field(
        None, description="request body: a string is sent as is, anything else as JSON"
    )
    Timeout: float = Field(
        0, ge=0, description="seconds the whole download may take, retries included; 0 = none"
    )
    IdleTimeout: float = Field(
        30, ge=0, description="seconds the server may stay silent (connect, or between reads)"
    )
    MaxBytes: int = Field(
        0,
        ge=0,
        description="largest file accepted; 0 = the executor's --max-download-bytes, "
        "which a run may not exceed",
    )
    Retries: int = Field(3, ge=0, le=20, description="further attempts after a transient error")
    Backoff: float = Field(0.5, ge=0, description="seconds before the first retry, then doubled")
    Concurrent: ConcurrentConfig = Field(default_factory=ConcurrentConfig)
    FileName: str = Field(
        "", description="name of the file written; default: the URL's last path segment"
    )

    @field_validator("FileName")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_file_name(value) if value else value


class Get(Processor[GetConfig]):
    """Downloads `URL` into the chunk's folder and answers with a FILESYSTEM_REF to it.

    A chunk's RawData may be a URL string, or an object whose fields (`URL`/`Source`,
    `Headers`, ...) override the run's configuration for that chunk alone.
    """

    id = "get"
    name = "Get (download a URL)"
    version = "0.1.0"
    Config = GetConfig

    @classmethod
    def config_for_chunk(cls, run_config: BaseModel, raw_data: Any) -> BaseModel:
        if isinstance(raw_data, str):
            raw_data = {"URL": raw_data}
        elif type(raw_data) is dict and "Source" in raw_data:
            raw_data = {("URL" if k == "Source" else k): v for k, v in raw_data.items()}
        return super().config_for_chunk(run_config, raw_data)

    @classmethod
    def apply_limits(cls, config: BaseModel, limits: Limits) -> BaseModel:
        """`MaxBytes` within `--max-download-bytes` (0 = the ceiling)."""
        limit = ceiling(config, "MaxBytes", limits.max_download_bytes, "--max-download-bytes")
        return config.model_copy(update={"MaxBytes": limit})

    async def run(self, data: Input, context: Context[GetConfig]) -> Output:
        config = context.config
        url = config.URL.strip()
        if not url:
            raise ChunkFailed(
                "get needs a URL: set URL (or Source) in the run's configuration "
                "or in the chunk's RawData"
            )
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "file"):
            raise ChunkFailed(
                f"cannot download {url!r}: get supports http://, https:// and file:// URLs"
            )
        sandbox = Sandbox.of(context)
        folder = context.scratch_dir
        name = config.FileName or name_from_url(url)
        part = folder / f"{name}.part"
        async with partial_result(part, folder, config.Timeout, f"download of {url}"):
            target = sandbox.writable(folder / name, "download target")
            part = sandbox.writable(part, "download target")
            if scheme == "file":
                source = sandbox.file_url_path(url)
                state = await _copy_local(source, part, url, sandbox, context)
            else:
                state = await _Download(url, part, sandbox, context).run()
            await asyncio.to_thread(sandbox.replace, part, target)
        return Output.file(target, state)


def name_from_url(url: str) -> str:
    """The last segment of the URL's path, made a safe file name ("download" if none).

    The segment is split off before it is decoded, so an encoded `%2F` turns into a
    `/` inside it: every separator becomes `_`, or `..%2F..%2Fx` would be a path that
    leads out of the chunk's folder (to other runs' files, still in the data dir). A
    segment git would read as `.git` gets a `_` in front."""
    segment = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    for bad in ("/", "\\", "\x00"):
        segment = segment.replace(bad, "_")
    if segment in ("", ".", ".."):
        return "download"
    if is_git_name(segment):  # `.../repo/.git`: a `.git` file only git may write
        return f"_{segment}"
    return segment.encode()[:200].decode("utf-8", "ignore") or "download"


def _too_big(url: str, size: int, limit: int, known: bool, limits: Limits) -> ChunkFailed:
    if limit >= limits.max_download_bytes:
        advice = "this executor's --max-download-bytes; the operator may raise it"
    else:
        advice = "raise MaxBytes to fetch it"
    if known:
        return ChunkFailed(f"{url} is {size} bytes, more than MaxBytes={limit}; {advice}")
    return ChunkFailed(f"download of {url} passed MaxBytes={limit} bytes and was stopped; {advice}")


class _RangesIgnored(Exception):
    """The server answered a ranged request with the whole body: fall back to one stream."""


class _Download:
    """One chunk's HTTP download: attempts, resumption, and the optional ranged parts."""

    def __init__(self, url: str, part: Path, sandbox: Sandbox, context: Context[GetConfig]):
        self.url = url
        self.part = part
        self.sandbox = sandbox
        self.config = config = context.config
        self.limits = context.limits
        self.report = context.report_progress
        self.network = context.network
        self.tls = context.tls
        self.client: httpx.AsyncClient | None = None
        self.file: BlockFile | None = None
        self.written = 0
        self.hasher = hashlib.sha256()
        self.digest = ""
        """The SHA-256 of a ranged download, hashed whole once its parts are written."""
        self.first: httpx.Response | None = None
        self.total: int | None = None
        self.parts = 1
        self.done = 0
        """Bytes written by all ranged parts together."""
        self.ranges_allowed = config.Concurrent.Enabled and config.Method == "GET"

    async def run(self) -> dict[str, Any]:
        config = self.config
        try:
            async with make_client(self.network, config.IdleTimeout, tls=self.tls) as client:
                self.client = client
                await with_retries(
                    self._attempt, config.Retries, config.Backoff, config.Method in IDEMPOTENT
                )
        finally:
            if self.file is not None:
                await self.file.close()
        return self._state()

    # -- requests ----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = dict(self.config.Headers)
        if not any(k.lower() == "accept-encoding" for k in headers):
            headers["Accept-Encoding"] = "identity"  # the bytes as served: sizes and ranges hold
        return headers

    async def _send(self, headers: dict[str, str]) -> httpx.Response:
        assert self.client is not None
        body = self.config.Body
        try:
            request = self.client.build_request(
                self.config.Method,
                self.url,
                headers=headers,
                content=body.encode() if isinstance(body, str) else None,
                json=body if body is not None and not isinstance(body, str) else None,
            )
            return await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.url) from None

    def _validator(self) -> str | None:
        """What If-Range may carry: a strong ETag, else Last-Modified."""
        assert self.first is not None
        etag: str | None = self.first.headers.get("etag")
        if etag and not etag.startswith("W/"):
            return etag
        modified: str | None = self.first.headers.get("last-modified")
        return modified

    def _resumable(self) -> bool:
        first = self.first
        return (
            first is not None
            and self.config.Method == "GET"
            and first.headers.get("accept-ranges", "").lower() == "bytes"
            and "content-encoding" not in first.headers
            and self._validator() is not None
        )

    # -- one attempt -------------------------------------------------------------------

    async def _attempt(self, n: int) -> None:
        headers = self._headers()
        resuming = self.written > 0 and self._resumable()
        if resuming:
            headers["Range"] = f"bytes={self.written}-"
            headers["If-Range"] = self._validator() or ""
        resp = await self._send(headers)
        try:
            if not resp.is_success:
                raise await status_error(resp, self.url)
            if resuming and resp.status_code == 206:
                _check_range(resp, self.written, None, self.total)
            else:
                if resp.status_code == 206:
                    raise FetchError(f"{self.url} answered 206 to a request without Range", False)
                await self._start_over(resp)
                parts = self._ranged_parts(resp)
                if parts > 1:
                    await resp.aclose()
                    try:
                        await self._ranged(parts)
                        return
                    except _RangesIgnored:
                        self.ranges_allowed = False
                        await self._restart_file()
                        return await self._attempt(n)
            await self._stream(resp)
        finally:
            await resp.aclose()

    async def _start_over(self, resp: httpx.Response) -> None:
        """A full answer: (re)start the file and check its announced size."""
        self.first = resp
        length = resp.headers.get("content-length")
        self.total = int(length) if length and length.isdigit() else None
        if "content-encoding" in resp.headers:
            self.total = None  # the length is of the encoded body, not of what is written
        limit = self.config.MaxBytes
        if limit and self.total is not None and self.total > limit:
            raise _too_big(self.url, self.total, limit, True, self.limits)
        await self._restart_file()

    def _open(self, path: Path, flags: int) -> int:
        """Open the `.part` file through the sandbox: where it was checked, no symlink."""
        return self.sandbox.open_fd(path, flags, write=True)

    async def _restart_file(self) -> None:
        if self.file is None:
            self.file = await BlockFile.create(self.part, opener=self._open)
        else:
            await self.file.truncate(0)
        self.written = 0
        self.hasher = hashlib.sha256()
        self.digest = ""
        self.parts = 1

    async def _stream(self, resp: httpx.Response) -> None:
        file = self.file
        assert file is not None
        limit = self.config.MaxBytes
        try:
            async for block in resp.aiter_bytes(BLOCK):
                if limit and self.written + len(block) > limit:
                    raise _too_big(self.url, self.written + len(block), limit, False, self.limits)
                await file.write_at(block, self.written, self.hasher)
                self.written += len(block)
                self.report(self.written, self.total)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.url) from None
        if self.total is not None and self.written != self.total:
            raise FetchError(
                f"{self.url} ended after {self.written} of {self.total} bytes", transient=True
            )

    # -- concurrent ranged parts -------------------------------------------------------

    def _ranged_parts(self, resp: httpx.Response) -> int:
        if not self.ranges_allowed or self.total is None or not self._resumable():
            return 1
        return max(1, min(self.config.Concurrent.Num, self.total // MIN_PART))

    async def _ranged(self, parts: int) -> None:
        assert self.total is not None
        total = self.total
        if self.file is not None:
            await self.file.close()
        self.file = await BlockFile.create(self.part, total, opener=self._open)
        self.parts = parts
        self.done = 0
        size = -(-total // parts)
        try:
            async with asyncio.TaskGroup() as group:
                for start in range(0, total, size):
                    group.create_task(self._part(start, min(start + size, total) - 1))
        except BaseExceptionGroup as errors:
            error = first_error(errors)
            if isinstance(error, FetchError):
                error.transient = False  # each part has had its retries already
            raise error from None
        self.written = total
        self.digest = await asyncio.to_thread(sha256_of, self.part)

    async def _part(self, start: int, end: int) -> None:
        position = start

        async def attempt(n: int) -> None:
            nonlocal position
            file = self.file
            assert file is not None
            assert self.first is not None
            headers = self._headers()
            headers["Range"] = f"bytes={position}-{end}"
            headers["If-Range"] = self._validator() or ""
            resp = await self._send(headers)
            try:
                if not resp.is_success:
                    raise await status_error(resp, self.url)
                if resp.status_code != 206:
                    raise _RangesIgnored()
                _check_range(resp, position, end, self.total)
                etag = self.first.headers.get("etag")
                if etag and resp.headers.get("etag", etag) != etag:
                    raise _RangesIgnored()  # changed on the server: start over, whole
                try:
                    async for block in resp.aiter_bytes(BLOCK):
                        if position + len(block) > end + 1:
                            raise FetchError(
                                f"{self.url} sent more than the range {start}-{end} asked for",
                                transient=False,
                            )
                        await file.write_at(block, position)
                        position += len(block)
                        self.done += len(block)
                        self.report(self.done, self.total)
                except httpx.HTTPError as exc:
                    raise transport_error(exc, self.url) from None
            finally:
                await resp.aclose()
            if position != end + 1:
                raise FetchError(f"{self.url} ended part {start}-{end} early", transient=True)

        await with_retries(attempt, self.config.Retries, self.config.Backoff)

    # -- result ------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        first = self.first
        assert first is not None
        headers = first.headers
        length = headers.get("content-length")
        final = str(first.url)
        return {
            "URL": self.url,
            "FinalURL": final if final != self.url else None,
            "ETag": headers.get("etag"),
            "LastModified": headers.get("last-modified"),
            "ContentLength": int(length) if length and length.isdigit() else None,
            "ContentType": headers.get("content-type"),
            "Size": self.written,
            "SHA256": self.digest or self.hasher.hexdigest(),
            "Parts": self.parts,
        }


def _check_range(resp: httpx.Response, start: int, end: int | None, total: int | None) -> None:
    """A 206 must carry exactly the range asked for, of the same whole size."""
    match = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
    ok = (
        match is not None
        and int(match[1]) == start
        and (end is None or int(match[2]) == end)
        and (total is None or match[3] == str(total))
    )
    if not ok:
        raise FetchError(
            f"{resp.url} answered Range {start}-{'' if end is None else end} with "
            f"Content-Range {resp.headers.get('content-range')!r}",
            transient=False,
        )


async def _copy_local(
    source: Path, part: Path, url: str, sandbox: Sandbox, context: Context[GetConfig]
) -> dict[str, Any]:
    """Copy an allowed local file, in a worker thread that stops when we are cancelled.
    Both ends are opened through the sandbox, so neither can be a symlink swapped in
    after the check."""
    stop = threading.Event()
    limit = context.config.MaxBytes

    def copy() -> dict[str, Any]:
        with sandbox.open_checked(source) as src:
            stat = os.fstat(src.fileno())
            if S_ISDIR(stat.st_mode):
                raise ChunkFailed(f"{url} is a folder; get copies single files")
            if not S_ISREG(stat.st_mode):
                raise ChunkFailed(f"{url}: not a regular file")
            if limit and stat.st_size > limit:
                raise _too_big(url, stat.st_size, limit, True, context.limits)
            return write(src, stat)

    def write(src: BinaryIO, stat: os.stat_result) -> dict[str, Any]:
        digest = hashlib.sha256()
        written = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with os.fdopen(sandbox.open_fd(part, flags, write=True), "wb") as dst:
            while block := src.read(BLOCK):
                if stop.is_set():
                    raise ChunkFailed("copy stopped")
                written += len(block)
                if limit and written > limit:
                    raise _too_big(url, written, limit, False, context.limits)
                dst.write(block)
                digest.update(block)
                context.report_progress(written, stat.st_size)
        return {
            "URL": url,
            "FinalURL": None,
            "ETag": None,
            "LastModified": _http_date(stat.st_mtime),
            "ContentLength": stat.st_size,
            "ContentType": None,
            "Size": written,
            "SHA256": digest.hexdigest(),
            "Parts": 1,
        }

    future = asyncio.get_running_loop().run_in_executor(None, copy)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([future])
        raise
