"""The processor library and the built-in processors."""

from ._base import Context, Input, Output, Processor, ProcessorConfig
from .get import Get, GetConfig
from .noop import Noop, NoopConfig

BUILTINS: tuple[type[Processor], ...] = (Noop, Get)  # type: ignore[type-arg]

__all__ = [
    "BUILTINS",
    "Context",
    "Get",
    "GetConfig",
    "Input",
    "Noop",
    "NoopConfig",
    "Output",
    "Processor",
    "ProcessorConfig",
]
