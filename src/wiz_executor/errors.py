"""The executor's exceptions: one root, each error saying what a person needs to act.

    WizError
    ├── InvalidInput                 a request body or argument that cannot be accepted
    │   └── InvalidConfiguration     a processor configuration its model rejects
    ├── NotFound
    │   ├── ProcessorNotFound
    │   ├── RunNotFound
    │   └── ChunkNotFound
    ├── Conflict                     the request contradicts what the executor already holds
    ├── PayloadTooLarge
    ├── ExecutorFull                 the bounded queue of waiting chunks is full; retry later
    ├── ShuttingDown                 the executor is stopping and takes no new work
    ├── Recovering                   the executor is rebuilding its runs from the journal
    ├── Unauthorized                 a required token is missing or wrong
    ├── Forbidden                    a browser request from another origin (CSRF defence)
    ├── MisdirectedRequest           a Host header naming no address of this executor
    │                                (DNS rebinding defence)
    ├── ChunkFailed                  a processor failed a chunk (never an HTTP answer: it is
    │   ├── ChunkTimeout             recorded on the chunk)
    │   └── NetworkRefused           the network policy refused a connection's address
    ├── TLSError                     a certificate, key or CA bundle cannot be used (a start-up
    │                                or client set-up error, never an HTTP answer)
    └── JournalError                 the journal cannot be opened (a start-up error) or a
        │                            commit failed (503: the executor takes no more writes)
        ├── JournalCorrupt           not a journal, damaged or truncated
        └── JournalTooNew            written by a newer version of the executor

HTTP status codes are assigned in exactly one place, `wiz_executor.server._errors`,
so the library can be used without the server and the mapping can be read at a glance.
"""

from __future__ import annotations


class WizError(Exception):
    """Root of every error the executor raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(WizError):
    """The request cannot be accepted as sent; nothing was changed."""


class InvalidConfiguration(InvalidInput):
    """A processor rejected the configuration it was given; no run was created."""


class NotFound(WizError):
    """The thing named in the request does not exist."""


class ProcessorNotFound(NotFound):
    def __init__(self, proc_id: str) -> None:
        super().__init__(f"no processor {proc_id!r} on this executor")
        self.proc_id = proc_id


class RunNotFound(NotFound):
    def __init__(self, proc_id: str, run_id: str) -> None:
        super().__init__(
            f"no run {run_id!r} of processor {proc_id!r}; configure it first with "
            f"POST /processors/{proc_id}/runs/{run_id}/config"
        )
        self.proc_id = proc_id
        self.run_id = run_id


class ChunkNotFound(NotFound):
    def __init__(self, run_id: str, chunk_id: str, kind: str) -> None:
        super().__init__(f"run {run_id!r} has no {kind} chunk {chunk_id!r}")
        self.chunk_id = chunk_id


class Conflict(WizError):
    """The request contradicts state the executor already holds; nothing was changed."""


class PayloadTooLarge(WizError):
    """The request is larger than the executor would ever accept: retrying cannot help."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(message or f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


class ExecutorFull(WizError):
    """Accepting the chunks would overflow the bounded queue of waiting chunks."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(WizError):
    def __init__(self) -> None:
        super().__init__("the executor is shutting down and accepts no new work")


class Recovering(WizError):
    """The executor is rebuilding its runs from the journal and takes no new work yet."""

    def __init__(self) -> None:
        super().__init__(
            "the executor is recovering its runs from the journal and takes no new work "
            "yet; retry shortly"
        )


class Unauthorized(WizError):
    """A token is required and was missing or wrong.

    `error` is RFC 6750's error code for the `WWW-Authenticate` header: empty when the
    request carried no bearer token at all (the RFC asks for no code then), else
    `invalid_token`."""

    def __init__(self, message: str, error: str = "") -> None:
        super().__init__(message)
        self.error = error


class Forbidden(WizError):
    """The request was refused whatever its credentials: a browser sent it from a page
    of another origin, which may not drive the executor."""


class MisdirectedRequest(WizError):
    """The request's Host header names no address of this executor: a page on another
    site whose name was made to resolve to this machine (DNS rebinding), or a proxy
    sending it to the wrong server."""


class ChunkFailed(WizError):
    """A processor could not produce an output for a chunk."""


class ChunkTimeout(ChunkFailed):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"processor did not finish the chunk within {seconds:g} s (timeout)")
        self.seconds = seconds


class NetworkRefused(ChunkFailed):
    """The network policy refused to connect to an address (`wiz_executor.netpolicy`).

    It fails the chunk (or the delivery) that asked, never the executor; the message
    names the address, the rule that refused it and the flag that would allow it."""

    def __init__(self, message: str, address: str, port: int) -> None:
        super().__init__(message)
        self.address = address
        self.port = port


class TLSError(WizError):
    """A certificate, private key or CA bundle named by the operator cannot be used; the
    message names the file and what is wrong with it. Raised before anything is served
    or sent, so an executor never starts with TLS half set up."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class JournalError(WizError):
    """The journal file cannot be used; the executor refuses to start rather than lose it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class JournalCorrupt(JournalError):
    """The journal file is not a journal, or is damaged or truncated.

    Never answered by starting afresh: the file may hold accepted chunks, so the person
    starting the executor decides (restore it, move it aside, or point `--db` elsewhere).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            path,
            f"the journal {path} cannot be read: {reason}. It may hold accepted chunks, so "
            "the executor will not start afresh over it: restore it from a backup, or move "
            "it aside (or start with another --db) to begin with an empty journal",
        )
        self.reason = reason


class JournalTooNew(JournalError):
    """The journal was written by a newer executor, whose schema this one cannot read."""

    def __init__(self, path: str, version: int, supported: int) -> None:
        super().__init__(
            path,
            f"the journal {path} has schema version {version}, newer than the {supported} "
            "this executor reads: run the newer executor that wrote it, or start this one "
            "with another --db",
        )
        self.version = version
        self.supported = supported
