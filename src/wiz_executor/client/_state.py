"""What both clients share: their lifecycle, and the token they send."""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_ENV = "WIZ_TOKEN"


def auth_headers(headers: Mapping[str, str] | None, token: str | None) -> dict[str, str]:
    """`headers` with `Authorization: Bearer TOKEN` added: `token`, or WIZ_TOKEN from the
    environment when it is None (an empty string sends none). An Authorization given
    in `headers` is kept as it is."""
    merged = dict(headers or {})
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token and not any(name.lower() == "authorization" for name in merged):
        merged["Authorization"] = f"Bearer {token}"
    return merged


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
