"""The journal package chooses its public names on purpose, as the top package does."""

from __future__ import annotations

from types import ModuleType

import wiz_executor
from wiz_executor import journal


def test_journal_all_lists_exactly_its_exported_names() -> None:
    exported = {
        name
        for name, value in vars(journal).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert set(journal.__all__) == exported


def test_the_stores_are_exported_from_the_package() -> None:
    assert wiz_executor.SqliteStore is journal.SqliteStore
    assert wiz_executor.MemoryStore is journal.MemoryStore
    assert issubclass(wiz_executor.SqliteStore, wiz_executor.JournalStore)
    assert issubclass(wiz_executor.MemoryStore, wiz_executor.JournalStore)
