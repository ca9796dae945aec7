"""Subgraphs: embed a whole graph (here, research) as one step of another.

Use it to reuse a graph file: `g.subgraph` inlines the other graph's nodes under a namespace
(`research.notes`), scheduled eagerly with everything else (no barrier around it) and
checkpointed as usual; the subgraph node's output is the embedded graph's `output`.
Run: `dagagents run graphs/subgraph.py --input topic="tidal power"`.
"""

from dagagents import Agent, Graph, SimulatedProvider

researcher = Agent("researcher", model="claude-haiku-4-5", max_tokens=400)
writer = Agent("writer", model="claude-sonnet-4-6", max_tokens=600)

research = Graph("research", output="notes")
research.input("topic")
research.task("sources", researcher, "Name three kinds of sources on {topic}.")
research.task("notes", researcher, "Take notes on {topic} from: {sources}", depends_on=["sources"])

graph = Graph("subgraph", output="article", simulator=SimulatedProvider(time_scale=0.2))
graph.input("topic", default="tidal power")
graph.subgraph("research", research, inputs={"topic": "topic"})
graph.task("angle", writer, "Suggest a fresh angle for an article on {topic}.")
graph.task("article", writer, "Write the article on {topic}: angle {angle}, notes {research}")
