"""The `dagagents` command line (typer + rich). Each command lives in its own module under
`commands`; they turn user input into library calls and results into one-sentence messages.

May import: every other room. Nothing but `dagagents.__main__` imports cli.
"""

from dagagents.cli.app import app, main

__all__ = ["app", "main"]
