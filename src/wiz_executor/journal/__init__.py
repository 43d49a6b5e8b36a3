"""The journal: the run map's change log, kept so accepted work survives a restart.

`JournalStore` is the interface; `SqliteStore` the durable store (one SQLite file, WAL,
group commit on a writer thread), `MemoryStore` the `--ephemeral` one and the tests'
stub. The run map emits the records (`RunConfigured`, `ChunksAccepted`, ...) as its
transitions happen; `load()` hands everything back in one pass to rebuild it.

    _records   the record types (msgspec structs): what the run map tells the journal
    _base      the interface, and what it hands back (StoredRun, StoredChunk, Attempt)
    _memory    MemoryStore
    _schema    the SQLite schema, its version, migrations and the start-up file checks
    _sqlite    SqliteStore: the writer thread, group commit, recovery and paging reads
"""

from ._base import (
    Attempt,
    JournalStore,
    PendingDelivery,
    Recovered,
    StoredChunk,
    StoredRun,
)
from ._memory import MemoryStore
from ._records import (
    AcceptedChunk,
    ChunkFailed,
    ChunkRequeued,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    DeliveryDone,
    DeliveryFailed,
    DeliveryPending,
    InputClosed,
    Record,
    RunConfigured,
    RunControlled,
    RunDeleted,
    RunFinished,
    RunRetried,
    SettingChanged,
)
from ._schema import VERSION as SCHEMA_VERSION
from ._sqlite import SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "AcceptedChunk",
    "Attempt",
    "ChunkFailed",
    "ChunkRequeued",
    "ChunkStarted",
    "ChunkSucceeded",
    "ChunksAccepted",
    "DeliveryDone",
    "DeliveryFailed",
    "DeliveryPending",
    "InputClosed",
    "JournalStore",
    "MemoryStore",
    "PendingDelivery",
    "Record",
    "Recovered",
    "RunConfigured",
    "RunControlled",
    "RunDeleted",
    "RunFinished",
    "RunRetried",
    "SettingChanged",
    "SqliteStore",
    "StoredChunk",
    "StoredRun",
]
