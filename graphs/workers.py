"""The market-report team: three Sonnet workers, an Opus planner and an Opus synthesizer.

A workers module is what plan files run with:

    dagagents plan "Create a market analysis report on ..." --workers graphs/workers.py -o plan.json
    dagagents run plan.json --workers graphs/workers.py

It defines `workers` (name -> Agent) and may define `planner`, `synthesizer` and `simulator`
(the offline provider used when ANTHROPIC_API_KEY is unset). `market_report.py` imports this team.

Offline, the simulator answers with scripted text (clearly labelled simulated) and realistic
latencies: the demo task gets the 7-subtask plan below; any other task gets the orchestrator's
default plan (one subtask per worker).
"""

import re

from dagagents import Agent, Orchestrator, Plan, Subtask

researcher = Agent(
    "researcher",
    model="claude-sonnet-4-6",
    system="You are an expert researcher. Find and compile factual information, with figures "
    "and the sources they come from. Flag estimates as estimates.",
    max_tokens=2048,
)
analyst = Agent(
    "analyst",
    model="claude-sonnet-4-6",
    system="You are a data analyst. Identify trends, patterns, drivers and risks in the "
    "information you are given, and say how confident you are.",
    max_tokens=2048,
)
writer = Agent(
    "writer",
    model="claude-sonnet-4-6",
    system="You are a professional writer. Create clear, engaging, well-structured business "
    "prose for executives.",
    max_tokens=2048,
)
planner = Agent(
    "planner",
    model="claude-opus-4-6",
    system="You are a task orchestrator. You break a complex task into well-scoped subtasks "
    "for specialised workers, run independent subtasks in parallel, and tell a synthesizer "
    "how to combine the results. You reply with a plan as JSON matching the given schema.",
    max_tokens=4096,
)
synthesizer = Agent(
    "synthesizer",
    model="claude-opus-4-6",
    system="You are a synthesis specialist. Combine specialist outputs into one coherent, "
    "well-structured report. Keep what the outputs support; do not invent figures.",
    max_tokens=4096,
)

workers = {"researcher": researcher, "analyst": analyst, "writer": writer}

# --------------------------------------------------------------------------- offline script
DEMO_TASK = "Create a market analysis report on the AI developer tools market in 2024."

DEMO_PLAN = Plan(
    subtasks=[
        Subtask(
            "market_size",
            "researcher",
            "Estimate the size of the AI developer tools market (coding assistants, AI "
            "testing, MLOps and LLM tooling) in 2024 and its growth rate, with sources.",
        ),
        Subtask(
            "competitors",
            "researcher",
            "Profile the five leading AI developer tool vendors in 2024: product, pricing, "
            "reported users or revenue, and positioning.",
        ),
        Subtask(
            "adoption",
            "researcher",
            "Collect 2024 evidence on developer adoption of AI tools: survey figures, "
            "enterprise rollout data and reported productivity effects.",
        ),
        Subtask(
            "pricing",
            "analyst",
            "Compare the pricing models of the leading vendors and explain what they imply "
            "for margins and buyer choice.",
            depends_on=["competitors"],
        ),
        Subtask(
            "trends",
            "analyst",
            "Identify the three trends most likely to shape the market in 2025, each backed "
            "by the market and adoption evidence.",
            depends_on=["market_size", "adoption"],
        ),
        Subtask(
            "risks",
            "analyst",
            "Assess the main risks for vendors and buyers: commoditisation, security and IP "
            "exposure, regulation and cost of inference.",
            depends_on=["market_size", "competitors"],
        ),
        Subtask(
            "executive_summary",
            "writer",
            "Write a one-paragraph executive summary for a CTO audience from the pricing, "
            "trend and risk analyses.",
            depends_on=["pricing", "trends", "risks"],
        ),
    ],
    synthesis_instructions="Produce a structured market report: executive summary first, then "
    "market size and growth, competitive landscape with pricing, adoption, trends, risks, and "
    "three recommendations. Cite figures from the research and mark estimates.",
)

_LABEL = "[simulated offline answer: scripted text, not model output]"

ANSWERS = {
    "market_size": (
        3.4,
        f"{_LABEL}\nMarket size 2024: about $4.5-5.5B across coding assistants, AI testing and "
        "LLM tooling (estimate; analyst reports range from $4B to $7B depending on scope). "
        "Growth: 25-30% a year, with coding assistants growing fastest (40%+). Sources: "
        "vendor disclosures, public analyst summaries, funding announcements.",
    ),
    "competitors": (
        3.1,
        f"{_LABEL}\n1. GitHub Copilot - IDE assistant, $10-39 per seat per month, the largest "
        "installed base.\n2. Cursor - AI-first editor, fast-growing among startups.\n3. "
        "Amazon Q Developer - bundled with AWS, strong in enterprises already on AWS.\n4. "
        "Tabnine - privacy-first, on-premises deployments.\n5. Replit - browser IDE with "
        "agents, strong with learners and prototypers.",
    ),
    "adoption": (
        2.9,
        f"{_LABEL}\nSurveys in 2024 report that 60-75% of professional developers use or plan "
        "to use AI coding tools; enterprise rollouts moved from pilots to org-wide licences. "
        "Reported productivity gains range from 10% to 50% on well-scoped tasks, smaller on "
        "complex changes; trust in generated code remains the top concern.",
    ),
    "pricing": (
        2.7,
        f"{_LABEL}\nPer-seat subscriptions dominate ($10-40 per month), with usage-based tiers "
        "appearing for agentic features. Seat pricing caps revenue per user while inference "
        "costs rise with usage, squeezing margins for heavy users. Buyers compare on "
        "security guarantees and IDE fit more than on price.",
    ),
    "trends": (
        3.0,
        f"{_LABEL}\n1. From autocomplete to agents: tools that plan and edit across files.\n2. "
        "Consolidation into platforms: assistants bundled with clouds and code hosts.\n3. "
        "Governance features (audit logs, policy, IP indemnity) become purchase criteria for "
        "enterprises.",
    ),
    "risks": (
        2.6,
        f"{_LABEL}\nCommoditisation as base models converge; security and IP exposure from "
        "generated code; regulation (EU AI Act obligations for providers); inference costs "
        "that grow faster than seat revenue; vendor lock-in for buyers.",
    ),
    "executive_summary": (
        2.4,
        f"{_LABEL}\nAI developer tools are a $5B market growing about 28% a year, led by "
        "coding assistants. Adoption is mainstream, pricing is converging on per-seat plans "
        "with usage tiers, and the next wave is agentic. The main risks are commoditisation "
        "and governance; buyers should standardise on one platform with strong controls.",
    ),
}

REPORT = f"""{_LABEL}

# The AI developer tools market in 2024

**Executive summary.** AI developer tools are roughly a $5B market (estimate) growing about 28%
a year, led by coding assistants. Adoption is mainstream (60-75% of developers), pricing is
converging on per-seat plans with usage tiers, and the next wave is agents that plan and edit
across files. Commoditisation and governance are the main risks.

## Market size and growth
$4.5-5.5B in 2024 (scope-dependent estimate), growing 25-30% a year; coding assistants 40%+.

## Competitive landscape and pricing
GitHub Copilot leads on installed base; Cursor grows fastest with startups; Amazon Q Developer
rides AWS; Tabnine wins privacy-sensitive buyers; Replit owns the browser. Seats cost $10-40 per
month; usage-based tiers are arriving for agentic features, and heavy users squeeze margins.

## Adoption
Pilots became org-wide licences in 2024. Reported gains: 10-50% on well-scoped tasks.

## Trends for 2025
Agents over autocomplete; consolidation into platforms; governance as a purchase criterion.

## Risks
Commoditisation, security and IP exposure, regulation, inference cost, lock-in.

## Recommendations
1. Standardise on one platform with audit logs and IP indemnity.
2. Measure productivity on your own codebase before scaling licences.
3. Budget for usage-based pricing as agentic features mature.
"""


def _simulator():
    """Offline answers: the demo plan for the demo task, canned worker answers, the report."""
    sim = Orchestrator(workers, planner, synthesizer).simulated_provider()  # default plan
    sim.script(DEMO_PLAN, agent="planner", pattern="AI developer tools market", latency=2.8)
    for sub in DEMO_PLAN.subtasks:
        latency, text = ANSWERS[sub.id]
        sim.script(text, agent=sub.worker, pattern="^" + re.escape(sub.task[:60]), latency=latency)
    sim.script(REPORT, agent="synthesizer", pattern="AI developer tools market", latency=3.6)
    return sim


simulator = _simulator()
