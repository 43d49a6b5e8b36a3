"""Processors only the tests use, loaded by `wiz executor` subprocesses as a plugin.

Put `tests/plugins` on the subprocess's PYTHONPATH: the `wiz_test_plugins-0.1.dist-info`
folder beside this module advertises it in the entry-point group `wiz.processors`, the
same way an installed plugin package does, so the executor needs no option of its own.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from wiz_executor import Context, Input, Processor, ProcessorConfig


class CrashConfig(ProcessorConfig):
    pass


class Crash(Processor[CrashConfig]):
    """Passes RawData through, but kills its own process (SIGKILL, no clean-up at all)
    on a chunk whose RawData object holds `"Crash": true`: a poison chunk."""

    id = "crash"
    name = "Crash on marked chunks"
    version = "0.1.0"
    Config = CrashConfig

    async def run(self, data: Input, context: Context[CrashConfig]) -> Any:
        raw = data.raw_data
        if isinstance(raw, dict) and raw.get("Crash"):
            os.kill(os.getpid(), signal.SIGKILL)
        return raw
