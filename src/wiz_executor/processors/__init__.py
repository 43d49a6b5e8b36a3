"""The processor library and the built-in processors."""

from ._base import Context, Input, Output, Processor, ProcessorConfig
from .noop import Noop, NoopConfig

BUILTINS: tuple[type[Processor], ...] = (Noop,)  # type: ignore[type-arg]

__all__ = [
    "BUILTINS",
    "Context",
    "Input",
    "Noop",
    "NoopConfig",
    "Output",
    "Processor",
    "ProcessorConfig",
]
