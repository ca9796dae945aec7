"""Importing a command module registers its commands on the app.

Start-up: `dagagents run` need not import what `render`, `plan`, `ui` or `trace` import, so the
entry point imports only the module of the command it was given (`load`); help, `--version`
and unknown commands import every module (`load_all`), so `--help` lists them all and a typo
gets click's suggestions. Code that invokes `app` in-process (typer's CliRunner) imports the
module of the command it uses (`from dagagents.cli.commands import run`) or calls `load_all()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

# Module names in the order their commands appear in `dagagents --help`.
MODULES = (
    "approve",
    "bench",
    "demo",
    "estimate",
    "limits",
    "plan",
    "render",
    "report",
    "run",
    "show",
    "store",
    "trace",
    "ui",
)
# Each command (or command group) -> the module that registers it
# (tests/cli/test_cli_startup.py checks this against what the modules really register).
COMMANDS = {name: name for name in MODULES if name != "store"} | {
    "status": "store",
    "gc": "store",
}


def load_all() -> None:
    """Register every command."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")


def command_of(argv: Sequence[str]) -> str | None:
    """The command a command line names: the first word, unless an option (`--help`,
    `--version`) comes before it."""
    for arg in argv:
        return None if arg.startswith("-") else arg
    return None


def load(argv: Sequence[str]) -> None:
    """Register what this command line needs: its command's module, or every module."""
    module = COMMANDS.get(command_of(argv) or "")
    if module is None:
        load_all()
    else:
        importlib.import_module(f"{__name__}.{module}")


__all__ = ["COMMANDS", "MODULES", "command_of", "load", "load_all"]
