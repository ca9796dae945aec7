"""The `dagagents` command line. Each command lives in its own module under `commands`."""

from dagagents.cli.app import app, main

__all__ = ["app", "main"]
