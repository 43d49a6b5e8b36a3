"""wiz-executor: the Wiz processor executor.

Serves the Wiz Processor API and runs processors on data chunks under worker limits.
The names below are the public API; everything in a module whose name starts with an
underscore is private.
"""

__version__ = "0.1.0"

from .api import (
    Configuration,
    Data,
    DataChunkState,
    DataFormat,
    DataSpec,
    DataType,
    DownstreamDataLocation,
    ExecutorConfig,
    ExecutorLimits,
    ExpectedData,
    FilesystemReference,
    RayConfig,
    RunChange,
    State,
    Waiting,
    WaitingReason,
    WorkModel,
)
from .api import (
    Processor as ProcessorInfo,
)
from .api import (
    Run as RunInfo,
)
from .client import AsyncClient, Client
from .errors import (
    ChunkFailed,
    ChunkNotFound,
    ChunkTimeout,
    Conflict,
    ExecutorFull,
    Forbidden,
    InvalidConfiguration,
    InvalidInput,
    JournalCorrupt,
    JournalError,
    JournalTooNew,
    MisdirectedRequest,
    NetworkRefused,
    NotFound,
    PayloadTooLarge,
    ProcessorNotFound,
    Recovering,
    RunNotFound,
    ShuttingDown,
    TLSError,
    Unauthorized,
    WizError,
)
from .executor import AddResult, Executor
from .journal import JournalStore, MemoryStore, SqliteStore
from .netpolicy import NetworkPolicy
from .processors import Context, Input, Limits, Output, Processor, ProcessorConfig
from .registry import Registry
from .server import create_app
from .settings import Settings

__all__ = [
    "AddResult",
    "AsyncClient",
    "ChunkFailed",
    "ChunkNotFound",
    "ChunkTimeout",
    "Client",
    "Configuration",
    "Conflict",
    "Context",
    "Data",
    "DataChunkState",
    "DataFormat",
    "DataSpec",
    "DataType",
    "DownstreamDataLocation",
    "Executor",
    "ExecutorConfig",
    "ExecutorFull",
    "ExecutorLimits",
    "ExpectedData",
    "FilesystemReference",
    "Forbidden",
    "Input",
    "InvalidConfiguration",
    "InvalidInput",
    "JournalCorrupt",
    "JournalError",
    "JournalStore",
    "JournalTooNew",
    "Limits",
    "MemoryStore",
    "MisdirectedRequest",
    "NetworkPolicy",
    "NetworkRefused",
    "NotFound",
    "Output",
    "PayloadTooLarge",
    "Processor",
    "ProcessorConfig",
    "ProcessorInfo",
    "ProcessorNotFound",
    "RayConfig",
    "Recovering",
    "Registry",
    "RunChange",
    "RunInfo",
    "RunNotFound",
    "Settings",
    "ShuttingDown",
    "SqliteStore",
    "State",
    "TLSError",
    "Unauthorized",
    "Waiting",
    "WaitingReason",
    "WizError",
    "WorkModel",
    "__version__",
    "create_app",
]
