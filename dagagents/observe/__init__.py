"""Observe: what a run did and what one would do — the trace and its one fold, the run record,
summaries, estimates, benchmarks, diagrams, timelines, reports, live progress, OpenTelemetry,
pricing.

May import: `model`, `store`, `providers`, `dagagents.errors`; `engine` only to drive a
simulation or a benchmark run (`estimate`, `bench`). Must not import: `cli`.
"""
