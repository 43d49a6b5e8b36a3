"""The chunk runner's `Context._of_chunk` makes the object `Context(...)` makes."""

from __future__ import annotations

from pathlib import Path

from wiz_executor.netpolicy import default_policy
from wiz_executor.processors import Context, Limits


def test_every_slot_is_set_as_the_constructor_sets_it() -> None:
    def report(done: int, total: int | None) -> None:
        return None

    network, limits = default_policy(), Limits(data_dir=Path("d"))
    args = ("p", "r", "c", {"k": 1}, Path("d"), report, (Path("a"),))
    made = Context(*args, network=network, tls=None, limits=limits, attempt=3)
    fast = Context._of_chunk(*args, network, None, limits, 3)
    assert type(fast) is Context
    for slot in Context.__slots__:  # (a slot added to Context must be set by both)
        assert getattr(fast, slot) is getattr(made, slot), slot
