"""Map-reduce: plan a list, work on every item at once, reduce the results.

Use it when one model call yields a list (subjects, files, questions) and each item needs the
same treatment: `g.map` adds one node per item after the list exists, runs them concurrently
under the run's limits, checkpoints each by its own content (add an item: only that one runs),
and hands the reduce step the ordered list. Run: `dagagents run graphs/map_reduce.py --input topic=cats`.
"""

from pydantic import BaseModel

from dagagents import Agent, Graph, SimulatedProvider


class Subjects(BaseModel):
    items: list[str]


planner = Agent("planner", model="claude-sonnet-4-6", max_tokens=300)
joker = Agent("joker", model="claude-haiku-4-5", max_tokens=200)

sim = SimulatedProvider(time_scale=0.2)  # offline: a believable plan, simulated jokes
sim.script(Subjects(items=["mice", "yarn", "cardboard boxes", "the vet"]), agent="planner")

graph = Graph("map_reduce", output="best", simulator=sim)
graph.input("topic", default="cats")
graph.task("subjects", planner, "List four subjects for jokes about {topic}.", output=Subjects)
graph.map("jokes", joker, "Write a joke about {item} (topic: {topic}).", over="subjects.items")


@graph.step
def best(jokes: list[str]) -> str:
    """The reduce: a map's output is the list of its items' outputs, in item order."""
    return max(jokes, key=len)
