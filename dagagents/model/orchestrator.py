"""The hierarchical pattern: a strong model plans, workers execute in parallel, a strong model
synthesises. The plan is compiled into the running graph, not interpreted in a loop.

`Orchestrator(workers).graph(task)` is a two-node graph, `plan -> synthesis`. The planner node
asks for a `Plan` as structured output (never a regex over free text), checks it against the
workers, and gives the planner one repair attempt with the problems. Its `expand` hook then adds
one node per subtask (named by subtask id, wired by `depends_on`) and an edge from each into the
synthesis node. The plan is the planner node's checkpointed output, and `expand` runs on the
checkpoint as on a fresh answer, so a resumed run rebuilds the same subgraph and reuses every
finished subtask without planning again.

With `stream_plan` (the default) the plan also grows the graph while it is being written: each
subtask starts once its JSON object is complete, valid on its own and its dependencies are done
(`streamed_expansion`); the final plan is still checked as a whole, and the streamed nodes it
does not contain unchanged are retired by the engine (engine/expand.py `stream_survivors`).
Streaming never changes a node's spec, so checkpoint keys are the same either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from dagagents.model.agents import DEFAULT_STRONG_MODEL, Agent
from dagagents.model.graph import Graph
from dagagents.model.nodes import AgentTask, Ask, Expansion, NodeSpec, Warn
from dagagents.model.plan import (
    DEFAULT_MAX_SUBTASKS,
    PLAN_NODE,
    SYNTHESIS_NODE,
    InvalidPlan,
    Plan,
    Subtask,
    SubtaskReader,
    default_synthesizer,
    literal,
    plan_expansion,
    plan_problems,
    subtask_node,
    synthesis_prompt,
    validate_plan,
)
from dagagents.providers.simulated import SimulatedProvider
from dagagents.store.codec import as_text

PLANNER_SYSTEM = (
    "You are a task orchestrator. You break a complex task into well-scoped subtasks for "
    "specialised workers, run independent subtasks in parallel, and tell a synthesizer how to "
    "combine the results. You reply with a plan as JSON matching the given schema."
)


def default_planner() -> Agent:
    return Agent("planner", model=DEFAULT_STRONG_MODEL, system=PLANNER_SYSTEM, max_tokens=4096)


class PlanTask(AgentTask):
    """The planner node. Its output is a valid `Plan` or the node fails with every problem.

    The agent answers with the `Plan` schema as structured output. A plan that names unknown
    workers, has a cycle, etc. is sent back once (`repairs`) with the problems listed; a plan
    still invalid after that fails the node. The engine sums the usage and cost of every call.
    """

    workers: tuple[str, ...]
    max_subtasks: int = Field(default=DEFAULT_MAX_SUBTASKS, gt=0)
    reserved: tuple[str, ...] = ()
    repairs: int = Field(default=1, ge=0)

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        fp = super().fingerprint(memo)
        fp["plan_check"] = {
            "workers": sorted(self.workers),
            "max_subtasks": self.max_subtasks,
            "reserved": sorted(self.reserved),
            "repairs": self.repairs,
        }
        return fp

    def problems(self, plan: Plan) -> list[str]:
        return plan_problems(
            plan, self.workers, max_subtasks=self.max_subtasks, reserved=self.reserved
        )

    async def answer(self, prompt: str, ask: Ask, warn: Warn) -> Plan:
        text = prompt
        problems: list[str] = []
        for attempt in range(self.repairs + 1):
            plan: Plan = await ask(text)
            problems = self.problems(plan)
            if not problems:
                return plan
            if attempt < self.repairs:
                warn(
                    f"plan rejected ({len(problems)} problem(s)); asking the planner "
                    f"to repair it: {' '.join(problems)}",
                    problems=problems,
                )
                text = repair_prompt(prompt, plan, problems)
        tries = "one repair attempt" if self.repairs == 1 else f"{self.repairs} repair attempts"
        # What the rejected answers cost is counted by the engine, which made the calls.
        raise InvalidPlan(problems, prefix=f"the plan is still invalid after {tries}")


def repair_prompt(prompt: str, plan: Plan, problems: list[str]) -> str:
    """The original request, the rejected plan and why it was rejected."""
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        f"{prompt}\n\nYour previous plan was rejected:\n\n<rejected_plan>\n"
        f"{as_text(plan)}\n</rejected_plan>\n\nProblems:\n{listed}\n\n"
        "Reply with a corrected plan that fixes every problem."
    )


def _as_workers(workers: Mapping[str, Agent | str] | Iterable[Agent]) -> dict[str, Agent]:
    if isinstance(workers, Mapping):
        items = list(workers.items())
    else:
        items = []
        for agent in workers:
            if not isinstance(agent, Agent):
                raise TypeError(f"workers must be Agents, not {type(agent).__name__}")
            items.append((agent.name, agent))
    out: dict[str, Agent] = {}
    for name, value in items:
        if isinstance(value, str):  # a system prompt: a worker on the default (Sonnet) model
            value = Agent(str(name), system=value)
        if not isinstance(value, Agent):
            raise TypeError(f"worker '{name}' must be an Agent, not {type(value).__name__}")
        out[str(name)] = value
    if not out:
        raise ValueError("an Orchestrator needs at least one worker")
    return out


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Orchestrator:
    """Plan at run time, execute in parallel, synthesise.

    `workers` maps names to Agents (a plain string is a system prompt for a worker on the
    default Sonnet model); the planner and synthesizer default to Opus. Any may be overridden.
    `simulator` is the provider its graphs use offline (no API key): by default a
    SimulatedProvider whose planner answers `default_plan(task)`. `stream_plan=False` starts
    the subtasks only once the whole plan is written (by default each starts as soon as its
    part of the streamed plan is complete and valid on its own).
    """

    def __init__(
        self,
        workers: Mapping[str, Agent | str] | Iterable[Agent],
        planner: Agent | None = None,
        synthesizer: Agent | None = None,
        *,
        max_subtasks: int = DEFAULT_MAX_SUBTASKS,
        repairs: int = 1,
        simulator: Any = None,
        stream_plan: bool = True,
    ) -> None:
        if max_subtasks < 1:
            raise ValueError("max_subtasks must be at least 1")
        self.workers = _as_workers(workers)
        self.planner = planner or default_planner()
        self.synthesizer = synthesizer or default_synthesizer()
        self.max_subtasks = max_subtasks
        self.repairs = repairs
        self.stream_plan = stream_plan
        # The planner's reply as last read while it streams (see `streamed_expansion`).
        self._plan_stream: _PlanStream | None = None
        # The provider its graphs use offline (no API key); default: `simulated_provider()`.
        self.simulator = simulator

    # ------------------------------------------------------------------ prompts
    def planner_prompt(self, task: str) -> str:
        """What the planner is asked (plain text; `planner_task` makes it template-safe)."""
        roster = "\n".join(
            f"- {name} ({agent.model}): {_one_line(agent.system) or 'a general assistant.'}"
            for name, agent in self.workers.items()
        )
        return (
            "Plan the following task for a team of workers.\n\n"
            f"<task>\n{task}\n</task>\n\n"
            f"Available workers (use these exact names as `worker`):\n{roster}\n\n"
            "Rules:\n"
            f"- Use between 1 and {self.max_subtasks} subtasks; prefer a few substantial "
            "subtasks to many tiny ones.\n"
            "- Give each subtask a unique short snake_case id, one worker, and a "
            "self-contained task: the worker sees only its task text and the outputs of the "
            "subtasks in its depends_on, never the original task or the other workers.\n"
            "- One worker may do several subtasks.\n"
            "- Put a subtask id in depends_on only when its output is needed; subtasks without "
            "dependencies run in parallel, so keep dependency chains short.\n"
            f"- Do not use the ids '{PLAN_NODE}' or '{SYNTHESIS_NODE}', and do not add a final "
            "subtask that merges everything: a synthesizer receives every subtask's output "
            "together with your synthesis_instructions."
        )

    # ------------------------------------------------------------------ nodes
    def planner_task(self, task: str, *, expand: bool = True) -> PlanTask:
        """The planner node; with `expand`, it grows the graph into the plan's subtasks."""
        return PlanTask(
            name=PLAN_NODE,
            agent=self.planner.with_(output=Plan),
            prompt=literal(self.planner_prompt(task)),
            workers=tuple(self.workers),
            max_subtasks=self.max_subtasks,
            reserved=(PLAN_NODE, SYNTHESIS_NODE),
            repairs=self.repairs,
            expand=self.expansion if expand else None,
            stream_expand=self.streamed_expansion if expand and self.stream_plan else None,
            tags={"role": "planner"},
        )

    def synthesis_task(self, task: str) -> AgentTask:
        """The synthesis node: the plan (with its instructions) and every subtask's output."""
        return AgentTask(
            name=SYNTHESIS_NODE,
            agent=self.synthesizer,
            prompt=synthesis_prompt(task, "{" + PLAN_NODE + "}", None),
            depends_on=(PLAN_NODE,),
            tags={"role": "synthesizer"},
        )

    def expansion(self, plan: Plan) -> Expansion:
        """The subtask nodes for `plan` (checked again: a checkpoint is not trusted blindly)."""
        validate_plan(
            plan,
            self.workers,
            max_subtasks=self.max_subtasks,
            reserved=(PLAN_NODE, SYNTHESIS_NODE),
        )
        return plan_expansion(plan, self.workers, planned_by=PLAN_NODE, synthesis=SYNTHESIS_NODE)

    def streamed_expansion(self, text: str) -> Expansion:
        """The subtask nodes that may start while the plan is still being written (`text`,
        the planner's reply so far): see `plan.SubtaskReader`. Only the text added since the
        last call is read (a reply that does not extend it is a new one, read afresh), and
        each subtask is checked and built once. Edges into the synthesis come with the final
        plan."""
        # Taken while read, put back after: graphs of one orchestrator may run in several
        # threads, and one that finds none reads its reply afresh (no lock: the orchestrator
        # stays picklable).
        stream, self._plan_stream = self._plan_stream, None
        if stream is None or not text.startswith(stream.text):
            reader = SubtaskReader(
                self.workers, max_subtasks=self.max_subtasks, reserved=(PLAN_NODE, SYNTHESIS_NODE)
            )
            stream = _PlanStream(reader)
        delta, stream.text = text[len(stream.text) :], text
        for s in stream.reader.feed(delta):
            stream.nodes.append(subtask_node(s, self.workers, planned_by=PLAN_NODE))
        self._plan_stream = stream
        return Expansion(nodes=list(stream.nodes))

    def _offline(self, simulator: Any) -> Any:
        if simulator is not None:
            return simulator
        if self.simulator is None:
            self.simulator = self.simulated_provider()
        return self.simulator

    def graph(self, task: str, *, name: str = "orchestrator", simulator: Any = None) -> Graph:
        """`plan -> synthesis`; the plan node adds the subtasks when it finishes.
        `simulator` overrides the orchestrator's offline provider for this graph."""
        g = Graph(name, simulator=self._offline(simulator))
        g.add(self.planner_task(task))
        g.add(self.synthesis_task(task))
        return g

    def plan_graph(self, task: str, *, name: str = "plan", simulator: Any = None) -> Graph:
        """Only the planner node (no expansion): what `dagagents plan` runs. Its checkpoint
        key equals the planner's in `graph(task)`, so a later run reuses the plan."""
        g = Graph(name, simulator=self._offline(simulator))
        g.add(self.planner_task(task, expand=False))
        return g

    def plan(self, task: str, **run_options: Any) -> Plan:
        """Run the planner alone and return its validated plan (raises RunFailed).
        `run_options` go to `Graph.run` (store, provider, ...; no store by default). With
        the store a later run of `graph(task)` uses, that run reuses this plan."""
        run_options.setdefault("store", None)
        result = self.plan_graph(task).run(**run_options)
        result.raise_for_status()
        plan: Plan = result.outputs[PLAN_NODE]
        return plan

    def preview(self, task: str, plan: Plan, *, name: str = "orchestrator") -> Graph:
        """The graph a run of `graph(task)` becomes once the planner answers `plan`: the
        planner, every subtask and the synthesis, for drawing or estimating before running."""
        expansion = self.expansion(plan)
        g = Graph(name, simulator=self.simulator)
        g.add(self.planner_task(task, expand=False))
        for node in expansion.nodes:
            g.add(node)
        synthesis = self.synthesis_task(task)
        extra = tuple(src for src, _ in expansion.edges)
        g.add(synthesis.model_copy(update={"depends_on": (*synthesis.depends_on, *extra)}))
        return g

    # ------------------------------------------------------------------ offline
    def default_plan(self, task: str) -> Plan:
        """A plain plan: each worker contributes its part, independently."""
        subtasks = []
        used: set[str] = {PLAN_NODE, SYNTHESIS_NODE}
        for name in self.workers:
            sid = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "worker"
            if not re.match(r"[A-Za-z_]", sid):
                sid = f"w_{sid}"
            sid = sid[:60]
            base, n = sid, 2
            while sid in used:
                sid, n = f"{base}_{n}", n + 1
            used.add(sid)
            subtasks.append(
                Subtask(
                    id=sid, worker=name, task=f"As the {name}, do your part of this task: {task}"
                )
            )
        return Plan(
            subtasks=subtasks,
            synthesis_instructions="Combine every worker's contribution into one complete answer "
            "to the task.",
        )

    def simulated_provider(self, plan: Plan | None = None, **options: Any) -> SimulatedProvider:
        """An offline provider whose planner answers `plan` (default: `default_plan` of the
        task in the prompt). Script more answers on it with `.script(...)`."""

        def answer(request: Any) -> Plan:
            if plan is not None:
                return plan
            text = _prompt_text(request)
            found = re.search(r"<task>\n(.*?)\n</task>", text, re.S)
            return self.default_plan(found.group(1) if found else "the task")

        provider = SimulatedProvider(**options)
        provider.script(answer, agent=self.planner.name)
        return provider

    def __repr__(self) -> str:
        return (
            f"Orchestrator(workers={list(self.workers)}, planner={self.planner.model}, "
            f"synthesizer={self.synthesizer.model})"
        )


def _prompt_text(request: Any) -> str:
    for message in reversed(getattr(request, "messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


__all__ = [
    "PLANNER_SYSTEM",
    "Orchestrator",
    "PlanTask",
    "default_planner",
    "repair_prompt",
]


@dataclass
class _PlanStream:
    """A planner's reply being read: the text read so far and the subtask nodes it gave."""

    reader: SubtaskReader
    text: str = ""
    nodes: list[NodeSpec] = field(default_factory=list)
