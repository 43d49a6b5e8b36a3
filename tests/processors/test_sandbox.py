"""The path confinement every file-touching processor relies on."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from wiz_executor.errors import ChunkFailed
from wiz_executor.processors._sandbox import Sandbox, partial_result, plain_file_name


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Sandbox, Path, Path, Path]:
    data = tmp_path / "data"
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    for folder in (data, allowed, outside):
        folder.mkdir()
    (data / "in.txt").write_text("in")
    (allowed / "shared.txt").write_text("shared")
    (outside / "secret.txt").write_text("secret")
    return Sandbox(data, (allowed,)), data, allowed, outside


def test_relative_paths_start_at_the_data_dir(layout: tuple[Sandbox, Path, Path, Path]) -> None:
    sandbox, data, _, _ = layout
    assert sandbox.readable("in.txt") == (data / "in.txt").resolve()
    assert sandbox.readable("sub/../in.txt") == (data / "in.txt").resolve()


def test_dotdot_that_leaves_is_refused(layout: tuple[Sandbox, Path, Path, Path]) -> None:
    sandbox, _, _, _ = layout
    with pytest.raises(ChunkFailed, match=r"outside the data directory"):
        sandbox.readable("../outside/secret.txt", "Dir")


def test_absolute_path_elsewhere_is_refused(layout: tuple[Sandbox, Path, Path, Path]) -> None:
    sandbox, _, _, outside = layout
    with pytest.raises(ChunkFailed, match=r"resolves to .*outside"):
        sandbox.readable(str(outside / "secret.txt"))
    with pytest.raises(ChunkFailed, match="outside"):
        sandbox.readable("/etc/passwd")


def test_symlink_that_escapes_is_refused(layout: tuple[Sandbox, Path, Path, Path]) -> None:
    sandbox, data, _, outside = layout
    os.symlink(outside, data / "link")
    with pytest.raises(ChunkFailed, match="symlink that leads outside"):
        sandbox.readable("link/secret.txt")
    os.symlink(data / "in.txt", data / "inner-link")
    assert sandbox.readable("inner-link") == (data / "in.txt").resolve()


def test_allowed_roots_are_readable_but_not_writable(
    layout: tuple[Sandbox, Path, Path, Path],
) -> None:
    sandbox, _, allowed, _ = layout
    assert sandbox.readable(allowed / "shared.txt") == (allowed / "shared.txt").resolve()
    with pytest.raises(ChunkFailed, match="outside the data directory"):
        sandbox.writable(allowed / "shared.txt")


def test_nul_and_empty_paths_are_refused(layout: tuple[Sandbox, Path, Path, Path]) -> None:
    sandbox, _, _, _ = layout
    with pytest.raises(ChunkFailed, match="NUL"):
        sandbox.readable("in\x00.txt")
    with pytest.raises(ChunkFailed, match="empty"):
        sandbox.readable("")


def test_file_urls(layout: tuple[Sandbox, Path, Path, Path]) -> None:
    sandbox, _, allowed, outside = layout
    url = (allowed / "shared.txt").as_uri()
    assert sandbox.file_url_path(url) == (allowed / "shared.txt").resolve()
    with pytest.raises(ChunkFailed, match="must be local"):
        sandbox.file_url_path("file://example.org/etc/passwd")
    with pytest.raises(ChunkFailed, match="outside"):
        sandbox.file_url_path((outside / "secret.txt").as_uri())


def test_references_need_the_local_driver(layout: tuple[Sandbox, Path, Path, Path]) -> None:
    sandbox, data, _, _ = layout
    assert sandbox.reference("local", str(data / "in.txt")) == (data / "in.txt").resolve()
    with pytest.raises(ChunkFailed, match="Driver 's3'"):
        sandbox.reference("s3", "bucket/key")
    with pytest.raises(ChunkFailed, match="empty Location"):
        sandbox.reference("local", "")


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "x\x00"])
def test_plain_file_names(name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        plain_file_name(name)


def test_plain_file_name_accepts_a_name() -> None:
    assert plain_file_name("report.csv") == "report.csv"


async def make_partial(part: Path, folder: Path, limit: float, fail: BaseException | None) -> None:
    """Write half a result inside `partial_result`, then fail with `fail` or hang."""
    async with partial_result(part, folder, limit, "copy of x"):
        await asyncio.to_thread(part.write_bytes, b"half")
        if fail is not None:
            raise fail
        await asyncio.Event().wait()


async def test_partial_result_is_removed_at_the_deadline(tmp_path: Path) -> None:
    folder = tmp_path / "chunk"
    folder.mkdir()
    with pytest.raises(ChunkFailed, match=r"copy of x did not finish within Timeout=0.05 s"):
        await make_partial(folder / "file.part", folder, 0.05, None)
    assert not folder.exists()  # the partial file, then the folder it left empty


async def test_partial_result_passes_other_timeouts_on(tmp_path: Path) -> None:
    # A TimeoutError from inside (an OS call that timed out) is not our deadline: it
    # is passed on as it is, not reported as "did not finish within Timeout=0 s".
    folder = tmp_path / "chunk"
    folder.mkdir()
    with pytest.raises(TimeoutError, match="connection timed out"):
        await make_partial(folder / "file.part", folder, 0, TimeoutError("connection timed out"))
    assert not folder.exists()
