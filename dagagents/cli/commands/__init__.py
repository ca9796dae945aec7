"""Importing a command module registers its commands on the app."""

from dagagents.cli.commands import estimate, render, report, run, store, trace  # noqa: F401
