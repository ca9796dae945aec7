"""Importing a command module registers its commands on the app."""

from dagagents.cli.commands import (  # noqa: F401
    approve,
    bench,
    demo,
    estimate,
    limits,
    plan,
    render,
    report,
    run,
    show,
    store,
    trace,
    ui,
)
