"""Configuration like a service: every option of `wiz executor` also comes from the
environment and from a TOML file, with flag > environment > file > default.

Generic on purpose: `ConfiguredCommand` walks the command's own parameters, so an
option added to `serve` later is settable from `WIZ_<NAME>` and from the file without
anything else to write (a test enumerates the options and fails otherwise). Click does
the resolving: each option gets its environment variable (`envvar`), and the file
becomes the context's `default_map`, which click consults after the command line and
the environment and before the declared default. `ctx.get_parameter_source` then says
where each value came from, for `--print-config` and for error messages. A command using
it declares `--config` (eager, `callback=load_config`) and `--print-config` itself, as
`serve` does. typer vendors its own copy of click, so the parameters and contexts here
are duck-typed (`Any`) rather than click's classes.

- Environment: `WIZ_` + the flag's name upper-cased, `-` as `_` (`--max-workers` is
  `WIZ_MAX_WORKERS`). Variables an option had already (`WIZ_TOKEN`, `WIZ_CA_CERTS`)
  keep working. A repeatable option takes several values separated by whitespace
  (paths by `:`, as in PATH); a switch takes `true`/`false` (`1`/`0`, `yes`/`no`).
- File: `--config PATH` or `WIZ_CONFIG`; keys are the flag names (`max-workers = 8`;
  `max_workers` is accepted too), a repeatable option takes an array, a switch a
  boolean. An unknown key is an error naming it and the closest valid key; a bad value
  names the key and the file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

ENV_PREFIX = "WIZ_"
CONFIG_ENV = "WIZ_CONFIG"
MASKED = "(set; masked)"
"""What `--print-config` writes for a secret that is set, as a comment."""

_SECRET = re.compile(r"(^|_)(token|password|secret)s?$")
"""Parameter names whose values are secrets, masked by `--print-config`: `token`,
`ssl_keyfile_password`, `downstream_token` (`token_file` is a path, not a secret)."""

_FILE_KEY = "wiz_config_file"
"""Where the loaded file's path is kept in the context's `meta`."""

_OWN = ("config", "print_config")
"""The parameters this module reads itself: they configure the configuration, and are
neither set from the environment (`WIZ_CONFIG` aside) nor from the file."""


def is_secret(param: Any) -> bool:
    return bool(param.name and _SECRET.search(param.name))


def key_of(param: Any) -> str:
    """The option's name in the file: its long flag without dashes (`max-workers`)."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return str(longs[0] if longs else param.opts[0]).lstrip("-")


def env_of(param: Any) -> str:
    """The option's own environment variable, `WIZ_MAX_WORKERS` for `--max-workers`."""
    return ENV_PREFIX + key_of(param).upper().replace("-", "_")


def settable(command: Any) -> list[Any]:
    """The options the environment and the file may set: all but `--config` and
    `--print-config` themselves (and `--help`, which click adds outside `params`)."""
    return [
        p
        for p in command.params
        if getattr(p, "param_type_name", None) == "option" and p.name not in _OWN
    ]


class ConfiguredCommand(TyperCommand):
    """A typer command whose options also come from `WIZ_*` variables and a TOML file,
    and which answers `--print-config` instead of running (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in settable(self):
            own = env_of(param)
            names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
            if own not in names:
                names.append(own)  # after an older name, which keeps working
            param.envvar = names[0] if len(names) == 1 else names
            param.show_envvar = True

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            raise _located(ctx, exc) from None

    def invoke(self, ctx: Any) -> Any:
        if ctx.params.get("print_config"):
            typer.echo(render(ctx, self), nl=False)
            return None
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            raise _located(ctx, exc) from None


def load_config(ctx: typer.Context, path: Path | None) -> Path | None:
    """`--config`'s callback (an eager option, so it runs before the other options
    are read): the file's values become the context's `default_map`."""
    if path is None or ctx.resilient_parsing:
        return path
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise typer.BadParameter(f"{path} is not valid TOML: {exc}") from None
    ctx.default_map = defaults_from(data, ctx.command, path)
    ctx.meta[_FILE_KEY] = path
    return path


def defaults_from(data: Mapping[str, Any], command: Any, path: Path) -> dict[str, Any]:
    """The file's settings as a `default_map` (parameter name to value), or a usage
    error naming the unknown key and the closest valid one, or a key given twice."""
    by_key = {key_of(p): p for p in settable(command)}
    defaults: dict[str, Any] = {}
    given: dict[str, str] = {}
    for raw, value in data.items():
        key = raw.replace("_", "-")
        param = by_key.get(key)
        if param is None:
            closest = difflib.get_close_matches(key, by_key, n=1, cutoff=0.0)
            hint = f"; did you mean {closest[0]!r}?" if closest else ""
            raise _FileError(
                f"{path}: unknown key {raw!r}{hint} (`wiz executor --help` lists the "
                "options; the keys are their names)"
            )
        if key in given:
            raise _FileError(f"{path}: {key!r} is given twice (as {given[key]!r} and {raw!r})")
        given[key] = raw
        if isinstance(value, dict):
            raise _FileError(f"{path}: {raw!r} is a table; give it a value ({key} = ...)")
        if param.multiple and not isinstance(value, list):
            value = [value]  # one value of a repeatable option, as a one-element array
        elif isinstance(value, list) and not param.multiple:
            raise _FileError(f"{path}: {raw!r} takes one value, not an array")
        value = [_scalar(v) for v in value] if isinstance(value, list) else _scalar(value)
        assert param.name is not None
        defaults[param.name] = value
    return defaults


def _scalar(value: Any) -> Any:
    """A TOML value as click converts it: numbers and booleans as they are (click's
    types take them), anything else (dates) as its text."""
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _located(ctx: Any, exc: typer.BadParameter) -> typer.BadParameter:
    """`exc` naming where the bad value came from when it was not the command line: the
    variable, or the key and the file."""
    param = exc.param or _param_of_hint(ctx, exc.param_hint)
    if param is None or param.name is None or isinstance(exc, _FileError):
        return exc
    source = _source(ctx, param)
    if source == "ENVIRONMENT":
        hint = _env_used(param) or env_of(param)
    elif source == "DEFAULT_MAP":
        hint = f"{key_of(param)!r} in {ctx.meta.get(_FILE_KEY)}"
    else:
        return exc
    return typer.BadParameter(exc.message, ctx=ctx, param_hint=hint)


def _source(ctx: Any, param: Any) -> str | None:
    """Where `param`'s value came from, by the name of click's `ParameterSource`
    (typer vendors its own click, so the enum is compared by name)."""
    source = ctx.get_parameter_source(param.name)
    return None if source is None else str(source.name)


class _FileError(typer.BadParameter):
    """A config file that cannot be used as it is: shown as a bad `--config`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param_hint="'--config' (or WIZ_CONFIG)")


def _param_of_hint(ctx: Any, hint: Any) -> Any | None:
    """The parameter a `BadParameter(param_hint="'--port'")` raised by the command's own
    code names."""
    if not isinstance(hint, str):
        return None
    flag = hint.strip("'\" ")
    for param in ctx.command.params:
        if flag in param.opts:
            return param
    return None


def _env_used(param: Any) -> str | None:
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    return next((name for name in names if os.environ.get(name)), None)


# -- --print-config ------------------------------------------------------------------


def render(ctx: Any, command: Any) -> str:
    """Each setting as a line of TOML (so the output can start a config file), with
    where its value came from; unset ones commented out, and secrets too (masked)."""
    file = ctx.meta.get(_FILE_KEY)
    lines = [
        "# wiz executor settings: flag > environment (WIZ_*) > file > default",
        f"# config file: {file}" if file else "# config file: none (--config or WIZ_CONFIG)",
    ]
    rows = list(_rows(ctx, command))
    width = max(len(setting) for setting, _ in rows)
    lines += [f"{setting:<{width}}  # {source}" for setting, source in rows]
    return "\n".join(lines) + "\n"


def _rows(ctx: Any, command: Any) -> Iterator[tuple[str, str]]:
    for param in settable(command):
        assert param.name is not None
        key = key_of(param)
        value = ctx.params.get(param.name)
        source = describe_source(ctx, param)
        if value is None or (param.multiple and not value):
            yield f"# {key} = (not set)", source
            continue
        if is_secret(param):
            # A comment, not a masked value: the output must stay a config file that
            # starts (a `token = "****"` would be taken as the token, and refused).
            yield f"# {key} = {MASKED}", source
            continue
        yield f"{key} = {toml_value(value)}", source


def describe_source(ctx: Any, param: Any) -> str:
    source = _source(ctx, param)
    if source == "COMMANDLINE":
        return f"flag --{key_of(param)}"
    if source == "ENVIRONMENT":
        return f"environment {_env_used(param) or env_of(param)}"
    if source == "DEFAULT_MAP":
        return f"file {ctx.meta.get(_FILE_KEY)}"
    return "default"


def toml_value(value: Any) -> str:
    """`value` written as TOML (JSON's strings are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)
