"""A child process for the kill test: appends chunks to a journal for ever, printing each
chunk ID once its append has resolved (the moment an AddData would answer 200).

    python _appender.py PATH
"""

from __future__ import annotations

import asyncio
import sys
import time

from wiz_executor.api import DataFormat
from wiz_executor.journal import AcceptedChunk, ChunksAccepted, RunConfigured, SqliteStore


async def main(path: str) -> None:
    store = SqliteStore(path)
    store.open()
    await store.append([RunConfigured("noop", "r1", {}, time.time())])
    print("ready", flush=True)
    n = 0

    async def add(i: int) -> None:
        chunk = AcceptedChunk(f"c{i}", f"c{i}-out", DataFormat.RAW, {"i": i, "pad": "x" * 100})
        await store.append([ChunksAccepted("noop", "r1", (chunk,), time.time())])
        sys.stdout.write(f"c{i}\n")
        sys.stdout.flush()

    while True:  # until killed: 64 concurrent single-chunk appends at a time
        await asyncio.gather(*(add(i) for i in range(n, n + 64)))
        n += 64


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
