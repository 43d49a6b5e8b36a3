"""The HTTP server of the Processor API."""

from ._errors import STATUS
from .app import create_app

__all__ = ["STATUS", "create_app"]
