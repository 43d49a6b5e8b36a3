"""The processor library and the built-in processors."""

from ._base import Context, Input, Limits, Output, Processor, ProcessorConfig
from .get import Get, GetConfig
from .git import Git, GitConfig
from .ls import Ls, LsConfig
from .noop import Noop, NoopConfig
from .scrape import Scrape, ScrapeConfig

BUILTINS: tuple[type[Processor], ...] = (Noop, Get, Git, Ls, Scrape)  # type: ignore[type-arg]

__all__ = [
    "BUILTINS",
    "Context",
    "Get",
    "GetConfig",
    "Git",
    "GitConfig",
    "Input",
    "Limits",
    "Ls",
    "LsConfig",
    "Noop",
    "NoopConfig",
    "Output",
    "Processor",
    "ProcessorConfig",
    "Scrape",
    "ScrapeConfig",
]
