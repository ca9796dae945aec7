"""Evaluator-optimizer: write, grade, rewrite with the feedback, until good enough.

Use it when quality can be judged and improved in rounds. `g.loop` unrolls the body graph round
by round (`refine[1].joke`, `refine[2].joke`, ...), carries the grader's feedback into the next
round, stops when `until` holds or at `max_rounds` (reported, not silent). Each round is
checkpointed: a run killed in round 3 resumes in round 3.
Run: `dagagents run graphs/evaluator_optimizer.py`.
"""

import itertools

from pydantic import BaseModel

from dagagents import Agent, Graph, SimulatedProvider


class Grade(BaseModel):
    score: int
    feedback: str


writer = Agent("writer", model="claude-sonnet-4-6", max_tokens=300)
grader = Agent("grader", model="claude-haiku-4-5", max_tokens=200)

scores = itertools.cycle([5, 7, 9])  # offline: the simulated grader warms up over rounds
sim = SimulatedProvider(time_scale=0.2)
sim.script(lambda req: Grade(score=next(scores), feedback="sharper punchline"), agent="grader")

body = Graph("refine", output="joke")
body.input("topic")
body.input("feedback", default="none yet")
body.task("joke", writer, "Write a joke about {topic}. Reviewer feedback: {feedback}")
body.task("grade", grader, "Score this joke 1-10 and say how to improve it: {joke}", output=Grade)

graph = Graph("evaluator_optimizer", output="refine", simulator=sim)
graph.input("topic", default="owls")
graph.loop(
    "refine",
    body,
    until=lambda grade: grade.score >= 8,
    max_rounds=4,
    carry={"feedback": "grade.feedback"},
    inputs={"topic": "topic"},
)
