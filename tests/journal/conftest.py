"""Fixtures of the journal tests: every behaviour runs against both stores.

`journal` is a `Harness` holding an open store, parametrised over `MemoryStore` and
`SqliteStore`; `reopen()` closes a SQLite store and opens the file again (what a restart
does), so a round trip through it proves the data was on disk, not just in the object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wiz_executor.journal import JournalStore, MemoryStore, SqliteStore


class Harness:
    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.store = self._new()
        self.store.open()

    def _new(self) -> JournalStore:
        return MemoryStore() if self.kind == "memory" else SqliteStore(self.path)

    async def reopen(self) -> JournalStore:
        if self.kind == "sqlite":
            await self.store.close()
            self.store = self._new()
            self.store.open()
        return self.store


@pytest.fixture(params=["memory", "sqlite"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(request.param, tmp_path / "data" / "wiz.db")
    try:
        yield harness
    finally:
        await harness.store.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "wiz.db")
    store.open()
    try:
        yield store
    finally:
        await store.close()
