"""Pipeline pattern: extract -> transform -> format, each stage checkpointed.

Use a pipeline when each stage needs the previous one's output and nothing can run in
parallel: the win is not speed but resumability. If the transform fails, or you edit its
prompt, a rerun reuses the checkpointed extraction and pays only for what changed.
"""

from dagagents import Agent, Graph

extractor = Agent(
    "extractor",
    model="claude-haiku-4-5",
    system="You extract facts from documents. List each fact on its own line.",
    max_tokens=800,
)
transformer = Agent(
    "transformer",
    model="claude-sonnet-4-6",
    system="You turn lists of facts into a structured analysis.",
    max_tokens=1200,
)

DOCUMENT = """Q3 revenue rose 18% to $42M, driven by enterprise seats. Churn fell to 2.1%.
The EU launch slipped to Q1. Gross margin held at 71%. Headcount grew from 180 to 205."""

graph = Graph("pipeline")
graph.task("extract", extractor, f"Extract every quantitative fact from:\n\n{DOCUMENT}")
graph.task(
    "transform",
    transformer,
    "Group these facts into growth, risk and efficiency, with one line of analysis each:\n\n"
    "{extract}",
    depends_on=["extract"],
)


@graph.step
def format(transform: str) -> str:  # noqa: A001 - the stage's name
    """Deterministic formatting needs no model: a plain Python step."""
    lines = [line.strip() for line in transform.splitlines() if line.strip()]
    return "# Quarterly brief\n\n" + "\n".join(f"- {line}" for line in lines)
