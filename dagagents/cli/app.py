"""The typer app and what every command shares: exit codes, user-error handling, loading.

Exit codes: 0 all nodes done, 1 some node failed, 2 user error (one sentence, no traceback),
3 waiting for an approval (`dagagents approve`, then run again), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from dagagents.errors import UserError
from dagagents.model.graph import Graph
from dagagents.store import StoreWarning

EXIT_OK, EXIT_FAILED, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_WAITING = 3

app = typer.Typer(
    name="dagagents",
    help="Run multi-agent LLM work as a DAG: eager scheduling, rate limits, checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

# Loaders for run/render/estimate targets by file suffix; plan files register ".json".
TARGET_LOADERS: dict[str, Any] = {".py": lambda path, **_: Graph.load(path)}


def fail(message: str, code: int = EXIT_USER) -> NoReturn:
    """Print one sentence to stderr and exit; the message must name what is wrong."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn UserError into a one-line message and exit code 2; Ctrl-C into exit 130."""
    try:
        yield
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted[/]: finished nodes are checkpointed; rerun to resume."
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def load_target(target: str, **options: Any) -> Graph:
    """A Graph from a graph file (`x.py` or `x.py:attr`) or any registered target kind."""
    path = Path(target.split(":", 1)[0])
    loader = TARGET_LOADERS.get(path.suffix)
    if loader is None:
        kinds = ", ".join(sorted(TARGET_LOADERS))
        raise UserError(f"'{target}' is not a graph file (expected one of: {kinds}).")
    graph = loader(target, **options)
    graph.validate()
    return graph


_show_warning = warnings.showwarning


def _print_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    """Store warnings (a damaged file skipped) as one plain line, not Python's two."""
    if isinstance(category, type) and issubclass(category, StoreWarning):
        err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)
        return
    _show_warning(message, category, *args, **kwargs)


def main() -> None:
    """Console-script entry point."""
    from dagagents.cli import commands  # noqa: F401 - registers every command

    warnings.showwarning = _print_warning

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
