"""A Python client of the Wiz Processor API: `Client` (blocking) and `AsyncClient`.

    from wiz_executor.client import Client

    with Client("http://127.0.0.1:8080") as wiz:
        wiz.configure("noop", "r1", {"ExpectedData": {"NumChunks": 2}})
        wiz.add_data("noop", "r1", [{"ChunkID": "a", "RawData": 1}, {"ChunkID": "b"}])
        run = wiz.wait("noop", "r1", timeout=60)

Each method is one API operation and returns the models of `wiz_executor.api`; error
answers raise the classes of `wiz_executor.errors` (a 404 as ProcessorNotFound,
RunNotFound or ChunkNotFound, 409 Conflict, 400 InvalidInput, 413 PayloadTooLarge,
429 ExecutorFull after the retries). Connection failures are httpx's `TransportError`.
"""

from ._async import AsyncClient
from ._errors import EventsUnavailable
from ._events import ChunkEvent, DoneEvent, DroppedEvent, Event, EventDecoder, RunEvent
from ._follow import is_finished
from ._operations import RunWhy
from ._retry import RetryPolicy
from ._state import DEFAULT_URL
from ._sync import Client

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "ChunkEvent",
    "Client",
    "DoneEvent",
    "DroppedEvent",
    "Event",
    "EventDecoder",
    "EventsUnavailable",
    "RetryPolicy",
    "RunEvent",
    "RunWhy",
    "is_finished",
]
