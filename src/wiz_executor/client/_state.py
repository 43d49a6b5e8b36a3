"""What both clients share about their own lifecycle."""

from __future__ import annotations

DEFAULT_URL = "http://127.0.0.1:8080"


class Lifecycle:
    """Open → closed, once. Like httpx, a client refuses to be reused after close:
    a silent reopen would hide a bug where two owners share one client."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entered = False
        self.closed = False

    def enter(self) -> None:
        if self.closed:
            raise RuntimeError(f"this {self.name} is closed; create a new one")
        if self.entered:
            raise RuntimeError(f"this {self.name} is already open; it can be opened only once")
        self.entered = True

    def close(self) -> bool:
        """Mark closed; True the first time (the caller then releases resources)."""
        if self.closed:
            return False
        self.closed = True
        return True

    def check(self) -> None:
        if self.closed:
            raise RuntimeError(f"this {self.name} is closed; create a new one")
