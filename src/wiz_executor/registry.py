"""Which processors this executor serves: the built-ins plus plugins.

A plugin is a `Processor` subclass advertised in the entry-point group `wiz.processors`
of any installed distribution, e.g. in its pyproject.toml:

    [project.entry-points."wiz.processors"]
    mine = "my_package.processors:Mine"
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points

from .errors import ProcessorNotFound
from .processors import BUILTINS, Processor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "wiz.processors"

ProcessorClass = type[Processor]  # type: ignore[type-arg]


class Registry:
    """Processor classes by ID."""

    def __init__(self, processors: Iterable[ProcessorClass] = ()) -> None:
        self._by_id: dict[str, ProcessorClass] = {}
        for cls in processors:
            self.register(cls)

    @classmethod
    def default(cls) -> Registry:
        """The built-ins, then every plugin that loads (a broken one is logged and skipped)."""
        registry = cls(BUILTINS)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                plugin = ep.load()
                registry.register(plugin)
            except Exception as exc:
                log.warning("processor plugin %s (%s) not loaded: %s", ep.name, ep.value, exc)
        return registry

    def register(self, cls: ProcessorClass) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Processor)):
            raise TypeError(f"{cls!r} is not a Processor subclass")
        if not getattr(cls, "id", ""):
            raise TypeError(f"{cls.__name__} has no processor id")
        if cls.id in self._by_id and self._by_id[cls.id] is not cls:
            raise ValueError(f"processor id {cls.id!r} is already taken by {self._by_id[cls.id]}")
        self._by_id[cls.id] = cls

    def get(self, proc_id: str) -> ProcessorClass:
        try:
            return self._by_id[proc_id]
        except KeyError:
            raise ProcessorNotFound(proc_id) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_id.values())

    def __contains__(self, proc_id: object) -> bool:
        return proc_id in self._by_id
