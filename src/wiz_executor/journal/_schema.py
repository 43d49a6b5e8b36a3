"""The journal's SQLite schema, created and migrated in one place (as huey's storage does).

The file says what it is twice: `PRAGMA application_id` marks it as a wiz-executor
journal (so another program's SQLite file is refused, not written over), and the
`schema_version` table holds the version of the layout below. `MIGRATIONS[n - 1]` turns
version n - 1 into version n; a new release appends to the list and never edits an entry,
so every journal since the first release opens. A journal of a newer version is refused
(`JournalTooNew`): this executor cannot know what the newer one wrote.

Layout (version 1; version 2 adds `runs.control`, a run's live changes; version 3 keeps
two partial indexes in place of `chunks_by_output` and `chunks_by_state`). Runs get a
small integer key (`rid`); chunks are keyed by (rid, seq),
seq counting a run's chunks in arrival order, in a WITHOUT ROWID table, so a run's chunks
sit together on disk in arrival order: recovery and paging read them as one range, and a
purge deletes one range. What is read only whole is one msgspec-encoded JSON array:
`input` is `[Format, RawData, Driver, Location, generated, accepted]` and `output`
(NULL until the chunk succeeds) `[Format, RawData, Driver, Location]`, because recovery
time goes mostly to fetching columns (measured: fetching 17 columns took 2.4 times as
long as 5), and msgspec decodes an array in one C call. State is an integer code (it is
indexed). Indexes exist only for the reads the store serves, and hold only the chunks
those reads cannot find otherwise: by ChunkID; by output ChunkID where it is not the
ChunkID + "-out"; FAILED chunks (paging a finished run's failures).
A chunk's attempts are a JSON array in its row, `[number, started, ended, outcome,
error, host, pid, worker]` each, grown and ended by SQLite's JSON functions in the same
UPDATE that moves the chunk's state (one statement per transition, no read-modify-write
in Python), and decoded by msgspec straight into `Attempt`s on recovery; times go in as
the text of the float (`json(repr(t))`), as SQLite would print them to 15 digits only.
A delivery row exists while an output is pending delivery to one downstream location;
delivering or giving up removes it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from ..errors import JournalCorrupt, JournalError, JournalTooNew

APPLICATION_ID = 0x57697A4A
"""'WizJ': `PRAGMA application_id` of every journal."""

_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
CREATE TABLE runs (
    rid INTEGER PRIMARY KEY,
    proc_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    configuration BLOB NOT NULL,
    created REAL NOT NULL,
    input_closed INTEGER NOT NULL DEFAULT 0,
    state INTEGER,
    finished REAL,
    counts BLOB,
    UNIQUE (proc_id, run_id)
);
CREATE INDEX runs_finished ON runs (finished) WHERE finished IS NOT NULL;
CREATE TABLE chunks (
    rid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    chunk_id TEXT NOT NULL,
    output_id TEXT NOT NULL,
    input BLOB NOT NULL,
    state INTEGER NOT NULL DEFAULT 1,
    output BLOB,
    error TEXT,
    delivery_error TEXT,
    attempts TEXT,
    PRIMARY KEY (rid, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX chunks_by_id ON chunks (rid, chunk_id);
CREATE INDEX chunks_by_output ON chunks (rid, output_id);
CREATE INDEX chunks_by_state ON chunks (rid, state, seq);
CREATE TABLE deliveries (
    rid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    downstream INTEGER NOT NULL,
    PRIMARY KEY (rid, seq, downstream)
) WITHOUT ROWID;
INSERT INTO schema_version VALUES (1);
"""

_V2 = """
ALTER TABLE runs ADD COLUMN control BLOB;
"""
"""Version 2: a run's live changes (`RunControlled`: MaxWorkers, ChunkTimeout, WorkModel,
Paused), as one JSON object applied over its configuration at recovery; NULL if none."""

_V3 = """
DROP INDEX chunks_by_state;
DROP INDEX chunks_by_output;
CREATE INDEX chunks_failed ON chunks (rid, seq) WHERE state = 4;
CREATE INDEX chunks_by_chosen_output ON chunks (rid, output_id)
    WHERE output_id != chunk_id || '-out';
"""
"""Version 3: two B-trees fewer to write per chunk. Every chunk was written into four
(the table, `chunks_by_id`, `chunks_by_output`, `chunks_by_state`), and its every change
of state moved it in `chunks_by_state`: the journal's writer thread cost as much CPU as
the event loop. The store pages by state only for a stored run's FAILED chunks (few, in
a run of many: a scan to find them would read the whole run; any other state is read by
scanning the run's range, in which it is common), so `chunks_failed` holds only FAILED
chunks, by (rid, seq): a chunk enters it when it fails, no other change touches it. An
output ID is the ChunkID + "-out" unless the client chose one (AssociatedChunkID) or
that one was taken (`runs._free_output_id`), so `chunks_by_chosen_output` holds only
those; the others are found through `chunks_by_id` (`SqliteStore.output`)."""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
"""`MIGRATIONS[n - 1]` brings a journal from version n - 1 to n (version 0: empty file)."""
VERSION = len(MIGRATIONS)

_MAGIC = b"SQLite format 3\x00"


def check_file(path: Path) -> None:
    """Refuse, before SQLite touches it, a file that cannot be a journal.

    SQLite itself would take an empty file as a new database (a silent fresh start over
    what may have been a journal), and reports a truncated one only when it reads past
    the end, perhaps long after start-up.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise JournalCorrupt(str(path), exc.strerror or str(exc)) from exc
    if size == 0:
        raise JournalCorrupt(str(path), "the file is empty (a journal never is)")
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise JournalCorrupt(str(path), exc.strerror or str(exc)) from exc
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise JournalCorrupt(str(path), "it is not an SQLite database")
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return  # the WAL may hold the newest pages; SQLite checks the whole on reading
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    if counter_valid and pages and size < pages * page_size:
        raise JournalCorrupt(
            str(path),
            f"it is truncated ({size} bytes; its header says {pages * page_size})",
        )


def connect(path: Path, *, fsync: bool, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in the journal's modes: WAL, and `synchronous` NORMAL or FULL.

    In WAL mode a commit appends to the -wal file; with NORMAL, SQLite does not fsync on
    commit, so a commit survives the process being killed (the OS has the bytes) but not
    a power loss or kernel crash; FULL fsyncs the WAL at every commit (`--fsync`).
    """
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=check_same_thread, cached_statements=64
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA busy_timeout=10000")  # a checkpoint in progress is not damage
    except BaseException:
        conn.close()
        raise
    return conn


def prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file, or check and migrate an existing one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if app_id == 0 and tables == 0:
            version = 0
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        elif app_id != APPLICATION_ID:
            raise JournalCorrupt(str(path), "it is an SQLite database but not a wiz journal")
        else:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0] if row and row[0] is not None else -1
            if version < 1:
                raise JournalCorrupt(str(path), "its schema version is missing")
            if version > VERSION:
                raise JournalTooNew(str(path), version, VERSION)
        for script in MIGRATIONS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        if version < VERSION:  # (a new file too: _V1 wrote version 1)
            conn.execute("UPDATE schema_version SET version = ?", (VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def lock(path: Path) -> int:
    """Take the journal's lock (`<path>.lock`, held while the store is open), or raise.

    SQLite would let two executors write one file, and each would number a run's chunks
    from its own cache, writing over the other's. A lock on a file of its own (`flock`),
    not on the database: closing any descriptor of the database would drop SQLite's own
    POSIX locks. The holder writes its PID there, for the message.
    """
    lock_path = Path(f"{path}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise JournalCorrupt(str(path), f"its lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JournalError(
            str(path),
            f"the journal {path} is in use by another executor (pid {holder}): stop that "
            "one first, or start this one with another --db",
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def makedirs(path: Path) -> None:
    """Create the journal's folder (the data directory) if it is missing."""
    os.makedirs(path.parent, exist_ok=True)
