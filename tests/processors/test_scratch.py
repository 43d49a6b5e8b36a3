"""Scratch folders: (processor, run, chunk) → folder must be one-to-one and bounded.

IDs come from users and may hold anything. Two chunks must never share a folder (one
would overwrite the other's file, and `git` clears its destination first), and no
component may exceed what a file system takes (255 bytes), whatever the ID's length
or encoding.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wiz_executor import (
    Configuration,
    Context,
    Data,
    Executor,
    ExpectedData,
    Input,
    Output,
    Processor,
    ProcessorConfig,
    Registry,
    Settings,
)
from wiz_executor.processors._base import folder_name

SAFE = frozenset(string.ascii_letters + string.digits + "-_.~")

ids = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="x1_./-~ \\é\x00", max_size=8),  # near-misses of each other
    st.text(min_size=200, max_size=400),  # too long as they are
    st.text(alphabet="éあ😀", min_size=60, max_size=300),  # multi-byte UTF-8
)


def check_component(name: str) -> None:
    assert name not in ("", ".", "..")
    assert len(name.encode()) <= 255
    assert set(name) <= SAFE, name
    assert not name.startswith(".")
    assert Path(name).parts == (name,)


@given(ids, ids)
@example("x/1", "x_1")
@example(".x", "x")
@example(".", "..")
@example("..", "_")
@example(".", "_")
@example("", "_")
@example("c1~0", "c1")
def test_distinct_ids_get_distinct_single_safe_components(a: str, b: str) -> None:
    check_component(folder_name(a))
    check_component(folder_name(b))
    if a != b:
        assert folder_name(a) != folder_name(b)
    else:
        assert folder_name(a) == folder_name(b)  # and it is a function of the ID alone


@pytest.mark.parametrize("name", ["c1", "r-2", "get", "chunk_0001.json", "A.b-C_d"])
def test_names_already_safe_stay_readable(name: str) -> None:
    assert folder_name(name) == name


@pytest.mark.parametrize("name", ["x/1", "a b", "..", ".hidden", "x" * 300, "é" * 300])
def test_escaped_names_keep_a_readable_prefix(name: str) -> None:
    escaped = folder_name(name)
    check_component(escaped)
    readable = name.lstrip(".")[:10].replace("/", "_").replace(" ", "_")
    if readable.isascii():
        assert escaped.startswith(readable)
    assert "~" in escaped


class WriteOwnId(Processor[ProcessorConfig]):
    """Writes its chunk's ID into `id.txt` in its scratch folder and answers with it."""

    id = "write-id"
    name = "writes its chunk's ID into its scratch folder"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        path = context.scratch_dir / "id.txt"
        path.write_text(f"{context.run_id}\n{context.chunk_id}")
        return Output.file(path)


def read_file(path: Path) -> str:
    return path.read_text()


COLLIDING = ["x/1", "x_1", ".x", "x", ".", "..", "_", "c" * 300, "é" * 300]
"""Chunk (and run) IDs the old mapping sent to the same folder or to no valid one."""


async def test_chunks_whose_ids_used_to_collide_keep_their_own_files(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    runs = ["x/1", "x_1", "..", "_"]
    async with Executor(settings, Registry([WriteOwnId])) as executor:
        for run in runs:
            config = Configuration(ExpectedData=ExpectedData(NumChunks=len(COLLIDING)))
            executor.configure("write-id", run, config)
            executor.add_data("write-id", run, [Data(ChunkID=c, RawData=c) for c in COLLIDING])
        folders: set[Path] = set()
        for run in runs:
            held = await executor.wait("write-id", run, timeout=20)
            for chunk_id in COLLIDING:
                chunk = held.chunks[chunk_id]
                assert chunk.error is None, (run, chunk_id, chunk.error)
                location = Path(chunk.out_location)
                assert read_file(location) == f"{run}\n{chunk_id}"
                assert location.is_relative_to(settings.data_dir)
                folders.add(location.parent)
        assert len(folders) == len(runs) * len(COLLIDING)
