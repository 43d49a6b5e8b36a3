"""Outputs the executor names (`<ChunkID>-out`) are not kept as strings of their own
(`Chunk.output_id`): they are found, and taken, exactly as the ones a client names."""

from __future__ import annotations

import pytest

from wiz_executor import Configuration, DataFormat, WorkModel
from wiz_executor.errors import ChunkNotFound, Conflict
from wiz_executor.runs import Chunk, Run, RunMap


def _run() -> tuple[RunMap, Run]:
    runs = RunMap()
    run = Run("noop", "r", Configuration(), Configuration(), 1, WorkModel.POOL, None)
    runs.insert(run)
    return runs, run


def _chunk(chunk_id: str, output_id: str = "") -> Chunk:
    """As AddData decodes it: no AssociatedChunkID names the output `<ChunkID>-out`."""
    out = output_id or f"{chunk_id}-out"
    return Chunk(chunk_id, out, DataFormat.RAW, None, "", "", not output_id)


def _add(runs: RunMap, run: Run, *chunks: Chunk) -> list[Chunk]:
    new, _ = runs.check_accepts(run, list(chunks))
    runs.accept(run, new)
    return new


def test_a_named_output_is_found_by_its_id_and_not_held_as_a_string() -> None:
    runs, run = _run()
    (a,) = _add(runs, run, _chunk("a"))
    assert a.output_id == "a-out"
    assert run.output("a-out") is a
    assert "a-out" not in run.outputs
    with pytest.raises(ChunkNotFound):
        run.output("b-out")
    with pytest.raises(ChunkNotFound):
        run.output("a")


def test_a_client_may_not_take_an_output_id_the_executor_gave() -> None:
    runs, run = _run()
    _add(runs, run, _chunk("a"))
    with pytest.raises(Conflict, match="a-out"):
        runs.check_accepts(run, [_chunk("b", "a-out")])
    with pytest.raises(Conflict, match="c-out"):  # (in one batch, the same)
        runs.check_accepts(run, [_chunk("c"), _chunk("d", "c-out")])


def test_an_output_id_a_client_took_first_makes_the_executor_pick_another() -> None:
    runs, run = _run()
    (x,) = _add(runs, run, _chunk("x", "a-out"))
    (a,) = _add(runs, run, _chunk("a"))
    assert a.output_id == "a-out-2"
    assert run.output("a-out") is x
    assert run.output("a-out-2") is a


def test_an_associated_id_of_the_executors_form_is_the_clients_own() -> None:
    """A client that names the output `<ChunkID>-out` itself owns that ID all the same."""
    runs, run = _run()
    (a,) = _add(runs, run, _chunk("a", "a-out"))
    assert run.output("a-out") is a
    assert not a.generated_output_id
    new, duplicates = runs.check_accepts(run, [_chunk("a", "a-out")])
    assert (new, duplicates) == ([], 1)


def test_restored_chunks_find_their_named_outputs() -> None:
    runs, run = _run()
    a, b = _chunk("a"), _chunk("b", "out-of-b")
    runs.restore(run, [a, b])
    assert run.output("a-out") is a
    assert run.output("out-of-b") is b
    assert list(run.outputs) == ["out-of-b"]
