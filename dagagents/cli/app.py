"""The typer app and what every command shares: exit codes, user-error handling, loading.

Exit codes: 0 all nodes done, 1 some node failed, 2 user error (one sentence, no traceback),
3 waiting for an approval (`dagagents approve`, then run again), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, cast

import typer

from dagagents.errors import UserError
from dagagents.store import StoreWarning

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from dagagents.model.graph import Graph

EXIT_OK, EXIT_FAILED, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_WAITING = 3
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM

app = typer.Typer(
    name="dagagents",
    help="Run multi-agent LLM work as a DAG: eager scheduling, rate limits, checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts are literal: "dagagents[ui]" keeps its brackets
)


class _LazyConsole:
    """A rich Console made on first use. Importing rich costs tens of milliseconds of start-up
    that a quiet run (`dagagents run -q`) never needs, so the consoles below are stand-ins that
    build the real one when something is first printed (or asked of it)."""

    def __init__(self, stream: str) -> None:
        self._stream = stream
        self._console: Console | None = None

    def real(self) -> Console:
        """The Console itself (for rich objects that keep a reference, such as `Live`)."""
        if self._console is None:
            from rich.console import Console

            stderr = self._stream == "stderr"
            tty = (sys.stderr if stderr else sys.stdout).isatty()
            # Piped output (CI logs, files) gets a wide fixed width instead of rich's 80
            # columns. Markup is off: node names, file names, errors and model output are
            # printed literally (`[bold]`, `data[/old].py`, `dagagents[dask]` are text, never
            # styles). Styling is done with `Text` objects (see `styled`), which cannot be
            # injected into.
            self._console = Console(stderr=stderr, width=None if tty else 140, markup=False)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def real_console(stand_in: Console) -> Console:
    """The Console behind `console` / `err_console` (itself if it is a Console already)."""
    return stand_in.real() if isinstance(stand_in, _LazyConsole) else stand_in


console = cast("Console", _LazyConsole("stdout"))

# Graph inputs, the same two options wherever a graph is run (`run`, `bench`).
InputOption = Annotated[
    list[str] | None, typer.Option("--input", help="A graph input, NAME=VALUE (repeatable).")
]
InputsFileOption = Annotated[
    Path | None, typer.Option("--inputs", help="A JSON object of graph inputs.")
]
err_console = cast("Console", _LazyConsole("stderr"))


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (text, style) pairs; no part is ever parsed as markup."""
    from rich.text import Text

    return Text.assemble(*parts)


def _load_graph_file(target: str, **_: Any) -> Graph:
    from dagagents.model.graph import Graph

    return Graph.load(target)


def _load_plan_file(target: str, **options: Any) -> Graph:
    """A plan file (`dagagents plan --out plan.json`) as a graph; the plan room loads on use."""
    from dagagents.model.plan import load_plan_graph

    return load_plan_graph(target, **options)


# Loaders for run/render/estimate targets by file suffix.
TARGET_LOADERS: dict[str, Any] = {".py": _load_graph_file, ".json": _load_plan_file}


def _print_version(value: bool) -> None:
    if value:
        from dagagents import __version__

        console.print(f"dagagents {__version__}", highlight=False)
        raise typer.Exit(EXIT_OK)


class _StartUp:
    """The collector is paused while the CLI imports its modules and loads the graph.

    Start-up allocates hundreds of thousands of long-lived objects (modules, classes, pydantic
    schemas), over which CPython would run ~120 young and a full collection before the first
    node starts (30-100 ms here) and find next to nothing. `main` pauses collections; once the
    graph is loaded (`load_target`), before any node runs, start-up's objects move to the
    oldest generation and collections resume, so the run's engine still freezes the heap it
    starts with (`engine/heap.py`). Commands that load no graph resume at once."""

    paused = False


def _pause_collector() -> None:
    if gc.isenabled():
        gc.disable()
        _StartUp.paused = True


def start_up_done() -> None:
    """Resume garbage collection if `main` paused it (idempotent)."""
    if _StartUp.paused:
        _StartUp.paused = False
        if not gc.get_freeze_count():  # a freeze that is not ours stays as it is
            # Everything start-up made moves to the oldest generation (two O(1) list moves;
            # freezing also resets the young generation's count): the first young collection
            # would otherwise walk all of it, ~60 ms here.
            gc.freeze()
            gc.unfreeze()
        gc.enable()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run multi-agent LLM work as a DAG: eager scheduling, rate limits, checkpoints."""
    if ctx.invoked_subcommand != "run":
        start_up_done()  # `run` resumes collections once its graph is loaded


def fail(message: str, code: int = EXIT_USER) -> NoReturn:
    """Print one sentence to stderr and exit; the message must name what is wrong."""
    err_console.print(
        styled(("error:", "bold red"), f" {message}"), highlight=False, soft_wrap=True
    )
    raise typer.Exit(code)


class _Signals:
    """SIGTERM is handled as Ctrl-C is (the run is cancelled, its manifest says
    "interrupted"); the exit code then says which one it was."""

    terminated = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _Signals.terminated = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)  # asyncio's: cancel the running graph cleanly
    else:
        raise KeyboardInterrupt


def _exit_now(signum: int, frame: FrameType | None) -> None:
    """A second Ctrl-C (or SIGTERM) while exit waits: leave at once, without a traceback."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED)


def interrupted_exit() -> NoReturn:
    """After Ctrl-C/SIGTERM: say so, say what exit still waits for, make a second signal
    end the process at once, and exit 130 (143 for SIGTERM)."""
    word = "terminated" if _Signals.terminated else "interrupted"
    err_console.print(
        styled((word, "yellow"), ": finished nodes are checkpointed; rerun to resume.")
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_now)
        signal.signal(signal.SIGTERM, _exit_now)
    from dagagents.engine.executors.local import running_sync_steps

    waiting = running_sync_steps()
    if waiting:
        names = ", ".join(f"'{name}'" for name in waiting)
        err_console.print(
            f"waiting for step {names} to return: a running Python function cannot be "
            "stopped from outside (press Ctrl-C again to exit now).",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_TERMINATED if _Signals.terminated else EXIT_INTERRUPTED)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn UserError into a one-line message and exit code 2; Ctrl-C into exit 130."""
    try:
        yield
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        interrupted_exit()


def safe_filename(name: str, suffix: str, *, prefix: str = "") -> Path:
    """A default output file in the current directory named after a graph.

    Graph names come from user code or from a manifest on disk (which anyone may have
    edited), so `/abs/dir/pwned` or `../../x` must not choose where we write: every
    character but letters, digits, `.`, `_` and `-` becomes `_`, and the name stays short."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{prefix}{name}").strip("._-")[:100] or "graph"
    return Path(f"{stem}{suffix}")


def load_target(target: str, **options: Any) -> Graph:
    """A Graph from a graph file (`x.py` or `x.py:attr`) or any registered target kind."""
    path = Path(target.split(":", 1)[0])
    loader = TARGET_LOADERS.get(path.suffix)
    if loader is None:
        kinds = ", ".join(sorted(TARGET_LOADERS))
        raise UserError(f"'{target}' is not a graph file (expected one of: {kinds}).")
    graph = loader(target, **options)
    graph.validate()
    start_up_done()
    return graph


_show_warning = warnings.showwarning


def _print_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    """Store warnings (a damaged file skipped) as one plain line, not Python's two."""
    if isinstance(category, type) and issubclass(category, StoreWarning):
        err_console.print(styled(("warning:", "yellow"), f" {message}"), highlight=False)
        return
    _show_warning(message, category, *args, **kwargs)


def main(*, resume_collector: bool = False) -> None:
    """Console-script entry point. `resume_collector`: the caller paused garbage collection
    for start-up (`python -m dagagents`) and start-up's end should resume it."""
    if resume_collector:
        _StartUp.paused = True
    else:
        _pause_collector()
    from dagagents.cli import commands

    commands.load(sys.argv[1:])  # only the command this line names (start-up time)

    warnings.showwarning = _print_warning
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_TERMINATED if _Signals.terminated else EXIT_INTERRUPTED)
    finally:
        start_up_done()
