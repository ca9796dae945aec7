"""Orchestrator-worker: a lead model splits the task, workers take one part each, a writer joins.

Use it when the parts are only known at run time. The orchestrator is an ordinary task with a
structured output; `g.map` fans the parts out to workers; the synthesis reads the ordered list.
No planner special-casing: the same three builder calls as any graph.
Run: `dagagents run graphs/orchestrator_worker.py --input task="a report on heat pumps"`.
"""

from pydantic import BaseModel

from dagagents import Agent, Graph, SimulatedProvider


class Section(BaseModel):
    title: str
    brief: str


class Outline(BaseModel):
    sections: list[Section]


lead = Agent("lead", model="claude-opus-4-6", max_tokens=600)
worker = Agent("worker", model="claude-sonnet-4-6", max_tokens=500)
editor = Agent("editor", model="claude-sonnet-4-6", max_tokens=900)

sim = SimulatedProvider(time_scale=0.2)
sim.script(
    Outline(
        sections=[
            Section(title="How they work", brief="Refrigerant cycle in plain words."),
            Section(title="Costs", brief="Install and running costs versus gas."),
            Section(title="Limits", brief="Cold climates, noise, retrofits."),
        ]
    ),
    agent="lead",
)

graph = Graph("orchestrator_worker", output="report", simulator=sim)
graph.input("task", default="a report on heat pumps")
graph.task("outline", lead, "Split {task} into three sections with a brief each.", output=Outline)
graph.map(
    "sections",
    worker,
    "Write the section '{item.title}' of {task}. Brief: {item.brief}",
    over="outline.sections",
)
graph.task("report", editor, "Join these sections into one report on {task}: {sections}")
