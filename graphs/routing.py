"""Routing: classify the request, run only the handler it needs, join whichever ran.

Use it when inputs fall into kinds that need different prompts or models. `when=` skips the
other handlers at zero cost (status "skipped", reason "condition false"); the join takes them
as optional parameters and receives None for the skipped ones.
Run: `dagagents run graphs/routing.py --input request="a poem about the sea"`.
"""

from pydantic import BaseModel

from dagagents import Agent, Graph, SimulatedProvider


class Route(BaseModel):
    kind: str  # "poem" | "joke" | "story"


router = Agent("router", model="claude-haiku-4-5", max_tokens=100)
writer = Agent("writer", model="claude-sonnet-4-6", max_tokens=600)

sim = SimulatedProvider(time_scale=0.2)


def classify(req: object) -> Route:
    """Offline stand-in for the router model: look for the kind in the request itself."""
    request = req.messages[-1]["content"].split("request?", 1)[-1]  # type: ignore[attr-defined]
    return Route(kind=next((k for k in ("poem", "joke") if k in request), "story"))


sim.script(classify, agent="router")

graph = Graph("routing", output="answer", simulator=sim)
graph.input("request", default="a poem about the sea")
graph.task("route", router, "Is this a poem, joke or story request? {request}", output=Route)
for kind in ("poem", "joke", "story"):
    graph.task(
        kind,
        writer,
        f"Write a {kind}: {{request}}",
        depends_on=["route"],
        when=lambda route, kind=kind: route.kind == kind,
    )


@graph.step
def answer(poem: str | None = None, joke: str | None = None, story: str | None = None) -> str:
    return poem or joke or story or ""
