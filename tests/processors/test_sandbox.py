"""The path confinement every file-touching processor relies on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wiz_executor.errors import ChunkFailed
from wiz_executor.processors._sandbox import Sandbox, plain_file_name


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
