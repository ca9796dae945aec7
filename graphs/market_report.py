"""Hierarchical pattern: an Opus planner splits the task, Sonnet workers run in parallel, an
Opus synthesizer writes the report. The plan is made at run time and compiled into the graph.

Use it when the task decomposes into subtasks you cannot list in advance but that are mostly
independent: research, reports, audits. Only the orchestrator sees the whole picture, so a bad
output is traced to one subtask and one worker. Skip it when one agent with a few tools would do,
or when every step needs the previous one (that is a pipeline): planning and synthesis are two
extra strong-model calls. If you already know the subtasks, write them down (`fanout.py`).

    dagagents run graphs/market_report.py            # offline: a scripted 7-subtask plan
    dagagents run plan.json --workers graphs/workers.py   # a plan made by `dagagents plan`

The team (workers, planner, synthesizer and the offline script) is in `workers.py`. Offline,
`graph.simulator` answers with a realistic plan of 7 subtasks: three research subtasks run in
parallel by the one researcher worker (each output kept under its subtask id), three analyses
that start as soon as their inputs exist, an executive summary, then the synthesis: about 13 s
at concurrency 4 (subtasks start while the plan is still being written; 16 s with
`stream_plan=False`), against 26 s for the same calls one after another. A killed run resumes
without planning again.
"""

from workers import DEMO_TASK, planner, simulator, synthesizer, workers

from dagagents import Orchestrator

TASK = DEMO_TASK
orchestrator = Orchestrator(workers, planner, synthesizer, simulator=simulator)
graph = orchestrator.graph(TASK, name="market-report")
