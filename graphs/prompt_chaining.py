"""Prompt chaining with a gate: draft, check, and continue only if the check passes.

Use it when a cheap check can stop an expensive chain early. The gate is a plain step; the
polish stage runs `when=` the gate holds, and is skipped at zero cost otherwise.
Run: `dagagents run graphs/prompt_chaining.py --input product="a solar kettle"`.
"""

from dagagents import Agent, Graph, SimulatedProvider

writer = Agent("writer", model="claude-haiku-4-5", max_tokens=300)
editor = Agent("editor", model="claude-sonnet-4-6", max_tokens=600)

sim = SimulatedProvider(time_scale=0.2)
sim.script("Boil water with sunlight. Call to action: order today.", agent="writer")

graph = Graph("prompt_chaining", output="polished", simulator=sim)
graph.input("product", default="a solar kettle")
graph.task("draft", writer, "Write a two-line ad for {product} with a call to action.")


@graph.step
def gate(draft: str) -> bool:
    """The check: only drafts with a call to action go on."""
    return "call to action" in draft.lower()


graph.task(
    "polished",
    editor,
    "Polish this ad, keep it two lines: {draft}",
    depends_on=["draft", "gate"],
    when=lambda gate: gate,
)
