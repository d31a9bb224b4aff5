"""``meseta --config meseta.toml COMMAND``: settings from a TOML file, under the flags and variables.

Top-level keys apply to every command that has that option; a ``[master]``, ``[allocator]``, ``[agent]``
(or any command's) table applies to that command alone and wins over the top level. Keys are the
options' names with ``-`` or ``_`` (``offer-timeout = 10``). A flag on the command line, then its
``MESETA_*`` variable, override the file; the file overrides the default, which is defined once, by the
service's settings class. An unknown key or table is refused with its name: a misspelt setting must not
be silently ignored.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup


class ConfigError(typer.BadParameter):
    """The file cannot be read, or names something no command has."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param_hint="--config")


def default_map(path: Path, group: TyperGroup, ctx: typer.Context) -> dict[str, dict[str, Any]]:
    """The click ``default_map`` of ``path`` for ``group``'s commands."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    commands = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    options = {
        name: {p.name for p in command.params if p.name is not None}
        for name, command in commands.items()
        if command is not None
    }
    shared = {_key(k): v for k, v in data.items() if not isinstance(v, dict)}
    sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    everywhere = set().union(*options.values()) if options else set()
    unknown = sorted(k for k in shared if k not in everywhere)
    if unknown:
        raise ConfigError(f"{path}: no command has {', '.join(unknown)}")
    result: dict[str, dict[str, Any]] = {}
    for name, known in options.items():
        result[name] = {k: v for k, v in shared.items() if k in known}
    for name, section in sections.items():
        if name not in options:
            raise ConfigError(f"{path}: no command {name!r}")
        values = {_key(k): v for k, v in section.items()}
        bad = sorted(k for k in values if k not in options[name])
        if bad:
            raise ConfigError(f"{path}: meseta {name} has no option {', '.join(bad)}")
        result[name].update(values)
    return result


def _key(name: str) -> str:
    return name.replace("-", "_")
