"""The engine: how a graph RUNS — the eager scheduler, the run loop, checkpoints, expansion,
agent invocation, limits, retries and the executors that host node bodies.

May import: `model`, `store`, `providers`, `observe` (the trace, the run record, pricing),
`dagagents.errors`. Must not import: `cli`.
"""
