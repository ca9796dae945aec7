"""Importing a command module registers its commands on the app."""

from dagagents.cli.commands import run, store  # noqa: F401
