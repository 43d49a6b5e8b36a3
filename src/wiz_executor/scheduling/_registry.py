"""The one list of work models: each registers its class under its wire name here.

`api.WorkModel` is the wire enum (names a client may send, and the OpenAPI document's
enum); this registry is what serves each name. The scheduler builds one instance per
registered model, and the CLI's `--work-model` choices come from the same enum, so a new
model is a class behind `WorkModelBase`, its name in `api.WorkModel`, and one
`@register` here (a test checks that every name is served and offered everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..api import WorkModel
from ._model import WorkModelBase

M = TypeVar("M", bound=type[WorkModelBase])

WORK_MODELS: dict[WorkModel, type[WorkModelBase]] = {}
"""Each wire name's model class, in registration order."""


def register(name: WorkModel) -> Callable[[M], M]:
    """Class decorator: serve runs of work model `name` with the decorated class."""

    def add(cls: M) -> M:
        if name in WORK_MODELS and WORK_MODELS[name] is not cls:
            raise ValueError(f"work model {name} is registered twice")
        WORK_MODELS[name] = cls
        cls.name = name
        return cls

    return add
