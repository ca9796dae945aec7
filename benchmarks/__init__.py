"""Benchmarks: dagagents against the ideal schedule, a hand-written baseline, LangGraph and Dask.

`dags` builds the fixed seeded suite and the yardsticks (ideal schedule, lower bound, checker),
`engines` runs one DAG on one engine, `runner` measures one engine run in a fresh process,
`compare` runs the whole suite (`python -m benchmarks.compare`).
"""
