"""A run with one of everything the trace records: a retry, a cache hit, a tool call, a failure
and the skip it causes. Shared by the trace, render and report tests."""

from __future__ import annotations

from pathlib import Path

from dagagents import Agent, Graph, ProviderError, RunResult, Script, SimulatedProvider
from dagagents.engine.retry import RetryPolicy

FAST = {"time_scale": 0.02, "jitter": 0.0}


def lookup(query: str) -> str:
    """Look a figure up in the (fake) database."""
    return f"42 units of {query}"


def _provider() -> SimulatedProvider:
    return SimulatedProvider(
        **FAST,
        scripts=[
            # `flaky` is overloaded once, then answers: one retry.
            Script(
                agent="flaky",
                error=ProviderError("overloaded", status=529, retryable=True),
                times=1,
            ),
            # `tooler` asks for one tool call, then answers from its result.
            Script(
                agent="tooler",
                times=1,
                respond=[
                    {"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"query": "x"}}
                ],
            ),
        ],
    )


CACHED = Agent("librarian", model="claude-haiku-4-5", max_tokens=200)


def _cached_node(g: Graph) -> None:
    g.task("background", CACHED, "Summarise the background in two lines.")


def eventful_run(store: Path) -> RunResult:
    """First a one-node run that checkpoints `background`, then the full graph (returned)."""
    warm = Graph("warm")
    _cached_node(warm)
    warm.run(provider=SimulatedProvider(**FAST), store=store, concurrency=2).raise_for_status()

    g = Graph("eventful")
    _cached_node(g)
    g.task("fetch", Agent("flaky", max_tokens=300), "Fetch the numbers.")
    g.task(
        "research",
        Agent("tooler", max_tokens=300, tools=(lookup,)),
        "Research x, using your tool.",
        depends_on=["background"],
    )

    @g.step
    def parse(fetch: str) -> int:
        raise ValueError("row 3 has no date")

    @g.step
    def chart(parse: int) -> str:
        return "never drawn"

    g.task(
        "memo",
        Agent("writer", model="claude-opus-4-6", max_tokens=400),
        "Write the memo.",
        depends_on=["research", "fetch"],
    )
    return g.run(
        provider=_provider(),
        store=store,
        concurrency=2,
        call_options={"retry": RetryPolicy(initial=0.01, max_wait=0.02, seed=1)},
    )
