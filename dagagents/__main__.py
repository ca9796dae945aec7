"""`python -m dagagents` is the CLI."""

from dagagents.cli import main

main()
