"""Fan-out with a fixed plan: researcher, analyst and writer workers, then one synthesis.

Use fan-out when the subtasks are known in advance and independent: they run in parallel, so
the wall time is the slowest branch, not the sum. (`market_report.py` is the same shape with
the plan made by an orchestrator model at run time.)
"""

from dagagents import Agent, Graph

researcher = Agent(
    "researcher",
    model="claude-sonnet-4-6",
    system="You research markets and report sourced figures concisely.",
    max_tokens=1024,
)
analyst = Agent(
    "analyst",
    model="claude-sonnet-4-6",
    system="You analyse data and name the drivers behind the numbers.",
    max_tokens=1024,
)
writer = Agent(
    "writer",
    model="claude-sonnet-4-6",
    system="You write crisp executive prose.",
    max_tokens=1024,
)
synthesizer = Agent(
    "synthesizer",
    model="claude-opus-4-6",
    system="You combine specialist findings into one coherent recommendation.",
    max_tokens=2048,
)

TOPIC = "the European market for home heat pumps"

graph = Graph("fanout")
graph.task("market_size", researcher, f"Estimate the size and growth of {TOPIC}.")
graph.task("competitors", researcher, f"List the five leading competitors in {TOPIC}.")
graph.task("pricing", analyst, f"Analyse price points and margins in {TOPIC}.")
graph.task("regulation", analyst, f"Summarise the regulation that drives {TOPIC}.")
graph.task("outline", writer, f"Draft the outline of an investor memo on {TOPIC}.")
graph.task(
    "synthesis",
    synthesizer,
    "Write the investor memo following this outline:\n\n{outline}\n\n"
    "Use the research and analysis below.",
    depends_on=["market_size", "competitors", "pricing", "regulation", "outline"],
    tags={"role": "synthesis"},  # `dagagents estimate` counts it as coordination overhead
)
