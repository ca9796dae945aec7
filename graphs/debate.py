"""Peer mesh pattern, bounded: agents debate in rounds; in round r each sees all peers' r-1.

Use a mesh when perspectives must react to each other (review, red-teaming, negotiation).
Bound it: every round is a full set of calls, so cost grows with agents x rounds, and
unbounded peer chatter never converges. Here 3 agents x 3 rounds, then a judge.
"""

from dagagents import Agent, Graph

QUESTION = "Should a 40-person startup adopt a four-day work week?"
ROUNDS = 3

peers = {
    "optimist": Agent(
        "optimist", model="claude-sonnet-4-6", system="You argue for bold change.", max_tokens=600
    ),
    "skeptic": Agent(
        "skeptic",
        model="claude-sonnet-4-6",
        system="You find the risks others miss.",
        max_tokens=600,
    ),
    "economist": Agent(
        "economist",
        model="claude-sonnet-4-6",
        system="You reason from costs, incentives and evidence.",
        max_tokens=600,
    ),
}
judge = Agent(
    "judge", model="claude-opus-4-6", system="You weigh arguments and decide.", max_tokens=1024
)

graph = Graph("debate")
for r in range(1, ROUNDS + 1):
    for name, agent in peers.items():
        previous = [f"{peer}_r{r - 1}" for peer in peers] if r > 1 else []
        prompt = (
            f"Question: {QUESTION}\nGive your position in round {r}."
            if r == 1
            else f"Question: {QUESTION}\nRound {r}: respond to every peer's previous argument "
            "(below) and refine your position."
        )
        graph.task(f"{name}_r{r}", agent, prompt, depends_on=previous)
graph.task(
    "verdict",
    judge,
    f"Question: {QUESTION}\nDecide, citing the strongest argument from each side.",
    depends_on=[f"{peer}_r{ROUNDS}" for peer in peers],
)
