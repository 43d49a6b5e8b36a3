"""What the numbers were measured on: machine, load, Python and package versions."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil

from wiz_executor import Settings, WorkModel

PACKAGES = (
    "wiz-executor",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "fastapi",
    "pydantic",
    "msgspec",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "packages": packages,
        "load_start": os.getloadavg()[0],
    }


_FLAGS = {"default_run_workers": "run-workers", "allowed_roots": "allow-root"}
_PLACEMENT = ("data_dir", "db_path")
"""Where the executor writes: set per measurement (a temporary directory), and no
bearing on the numbers."""


def flags(settings: Settings) -> str:
    """The settings that differ from a fresh `wiz executor`'s, as its flags ("defaults"
    when none do), so that every table can say what it measured."""
    defaults = Settings()
    out = []
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if field.name in _PLACEMENT or value == getattr(defaults, field.name):
            continue
        if isinstance(value, WorkModel):
            value = value.value.lower()
        if isinstance(value, bool):  # --ephemeral, --no-fsync
            out.append(f"--{'' if value else 'no-'}{field.name.replace('_', '-')}")
            continue
        out.append(f"--{_FLAGS.get(field.name, field.name.replace('_', '-'))} {value}")
    return " ".join(out) or "defaults"
