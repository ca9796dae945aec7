"""Plans as data: `Plan` / `Subtask`, their validation, the graph they compile to, plan files.

A plan is what an orchestrator decides: subtasks, each done by one named worker, wired by
`depends_on`, plus instructions for the synthesis. Everything is keyed by subtask id, never by
worker name, so one worker may serve many subtasks and every output is kept.

Validation reports every problem, one sentence each, so a planner asked to repair its plan (and
a user reading a plan file) sees all of them at once.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dagagents.errors import PlanError, UserError, clip
from dagagents.model.agents import DEFAULT_STRONG_MODEL, Agent
from dagagents.model.graph import Graph, did_you_mean, load_module
from dagagents.model.nodes import AgentTask, Expansion
from dagagents.model.partial import ListReader

DEFAULT_MAX_SUBTASKS = 50
PLAN_NODE = "plan"
SYNTHESIS_NODE = "synthesis"
_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

SYNTHESIZER_SYSTEM = (
    "You are a synthesis specialist. You combine the outputs of specialist workers into one "
    "coherent, well-structured final result. Keep what is supported by the workers' outputs, "
    "resolve contradictions explicitly, and do not invent facts they did not provide."
)


class Subtask(BaseModel):
    """One unit of work for one worker. `Subtask("size", "researcher", "Estimate ...")`."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        description="Short unique snake_case name of this subtask, e.g. 'market_size'. "
        "Other subtasks refer to it in depends_on."
    )
    worker: str = Field(description="Name of the worker that does this subtask.")
    task: str = Field(
        description="Self-contained instructions for the worker: it sees only this text and "
        "the outputs of the subtasks it depends on."
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Ids of the subtasks whose outputs this one needs; they run first. "
        "Leave empty when the subtask is independent, so it runs in parallel.",
    )

    def __init__(
        self,
        id: str | None = None,  # noqa: A002 - the field's name
        worker: str | None = None,
        task: str | None = None,
        /,
        **data: Any,
    ) -> None:
        for key, value in (("id", id), ("worker", worker), ("task", task)):
            if value is not None:
                data[key] = value
        super().__init__(**data)


class Plan(BaseModel):
    """Subtasks wired by `depends_on`, and how to combine their outputs."""

    model_config = ConfigDict(extra="forbid")

    subtasks: list[Subtask] = Field(
        description="The subtasks. Independent ones run in parallel; a subtask starts as soon "
        "as every subtask in its depends_on has finished."
    )
    synthesis_instructions: str = Field(
        description="How the synthesizer should combine the subtask outputs into the final result."
    )

    def workers_used(self) -> dict[str, int]:
        """How many subtasks each worker serves."""
        counts: dict[str, int] = {}
        for s in self.subtasks:
            counts[s.worker] = counts.get(s.worker, 0) + 1
        return counts


class InvalidPlan(PlanError):
    """A plan with problems; `problems` holds one sentence per problem."""

    def __init__(self, problems: list[str], *, prefix: str = "invalid plan") -> None:
        self.problems = list(problems)
        super().__init__(f"{prefix}: {' '.join(self.problems)}")


# ---------------------------------------------------------------------------- validation
MAX_LISTED_PROBLEMS = 10  # a plan with 2,000 problems is reported as 10 and "1,990 more"


class _Problems:
    """Problem sentences, listed up to a limit and only counted past it (so a huge broken plan
    costs no more to report than a small one: no sentence, no suggestion is built for them)."""

    def __init__(self, limit: int = MAX_LISTED_PROBLEMS) -> None:
        self.listed: list[str] = []
        self.total = 0
        self.limit = limit

    def add(self, sentence: str | Callable[[], str]) -> None:
        self.total += 1
        if len(self.listed) < self.limit:
            self.listed.append(sentence() if callable(sentence) else sentence)

    def result(self) -> list[str]:
        more = self.total - len(self.listed)
        return self.listed + ([f"(and {more:,} more.)"] if more > 0 else [])


def _quote_list(names: Iterable[str]) -> str:
    items = sorted(names)
    return clip(", ".join(items)) if items else "none"


def plan_problems(
    plan: Plan,
    workers: Iterable[str],
    *,
    max_subtasks: int = DEFAULT_MAX_SUBTASKS,
    reserved: Iterable[str] = (),
) -> list[str]:
    """Every problem with `plan`, one sentence each (empty when the plan is valid).

    A plan over `max_subtasks` is reported for that alone: checking 10,000 subtasks against
    each other would take minutes and the plan must shrink anyway. At most
    `MAX_LISTED_PROBLEMS` are listed, then how many more there are; user strings are clipped."""
    worker_names = set(workers)
    reserved_ids = set(reserved)
    subtasks = plan.subtasks
    if not subtasks:
        return ["the plan has no subtasks; it needs at least one."]
    if len(subtasks) > max_subtasks:
        return [
            f"the plan has {len(subtasks):,} subtasks, more than the limit of {max_subtasks} "
            "(max_subtasks); merge related subtasks."
        ]
    problems = _Problems()
    counts: dict[str, int] = {}
    for s in subtasks:
        counts[s.id] = counts.get(s.id, 0) + 1
    for sid, n in counts.items():
        if n > 1:
            problems.add(f"subtask id '{clip(sid)}' is used by {n} subtasks; ids must be unique.")
    ids = set(counts)
    for s in subtasks:
        if not _ID.match(s.id):
            problems.add(
                f"subtask id {clip(repr(s.id))} is not a valid name (use up to 64 letters, "
                "digits, '_', '-' or '.', starting with a letter or '_')."
            )
        elif s.id in reserved_ids:
            problems.add(
                f"subtask id '{s.id}' is reserved for the orchestrator's own node; choose "
                "another id."
            )
        if s.worker not in worker_names:
            problems.add(functools.partial(_unknown_worker, s, worker_names))
        if not s.task.strip():
            problems.add(f"subtask '{clip(s.id)}' has an empty task.")
        for dep in dict.fromkeys(s.depends_on):
            if dep == s.id:
                problems.add(f"subtask '{clip(s.id)}' depends on itself.")
            elif dep not in ids:
                problems.add(functools.partial(_unknown_dependency, s, dep, ids))
    for cycle in _cycle_problems(plan):
        problems.add(cycle)
    return problems.result()


def streamed_subtasks(
    text: str,
    workers: Iterable[str],
    *,
    max_subtasks: int = DEFAULT_MAX_SUBTASKS,
    reserved: Iterable[str] = (),
) -> list[Subtask]:
    """The subtasks of a plan still being written (`text`, the reply so far) that may start
    now: each complete (see `partial.ListReader`) and valid on its own, in plan order (see
    `SubtaskReader`, which reads the reply delta by delta)."""
    reader = SubtaskReader(workers, max_subtasks=max_subtasks, reserved=reserved)
    reader.feed(text)
    return list(reader.accepted.values())


class SubtaskReader:
    """Reads a plan's reply delta by delta: `feed(delta)` returns the subtasks that may start
    because of it, each once, in plan order; `accepted` holds all of them so far; `restart()`
    reads a new reply. Each subtask is checked once, when its JSON completes.

    Valid on its own: it matches the schema, its id is well formed, not reserved and not used
    by an earlier subtask, its worker exists, its task is not empty, it is within
    `max_subtasks`, and every dependency is an earlier subtask accepted here (so no cycle can
    form among them). Anything else waits for the whole plan, which is validated as today."""

    def __init__(
        self,
        workers: Iterable[str],
        *,
        max_subtasks: int = DEFAULT_MAX_SUBTASKS,
        reserved: Iterable[str] = (),
    ) -> None:
        self.worker_names = set(workers)
        self.reserved_ids = set(reserved)
        self.max_subtasks = max_subtasks
        self.restart()

    def restart(self) -> None:
        self._reader = ListReader("subtasks")
        self._seen: set[str] = set()
        self._count = 0
        self.accepted: dict[str, Subtask] = {}

    def feed(self, delta: str) -> list[Subtask]:
        fresh: list[Subtask] = []
        for item in self._reader.feed(delta):
            s = self._check(item)
            if s is not None:
                self.accepted[s.id] = s
                fresh.append(s)
        return fresh

    def _check(self, item: Any) -> Subtask | None:
        index, self._count = self._count, self._count + 1
        sid = item.get("id") if isinstance(item, dict) else None
        duplicate = isinstance(sid, str) and sid in self._seen
        if isinstance(sid, str):
            self._seen.add(sid)
        if index >= self.max_subtasks or duplicate:
            return None
        try:
            s = Subtask.model_validate(item)
        except ValidationError:
            return None
        if (
            _ID.match(s.id)
            and s.id not in self.reserved_ids
            and s.worker in self.worker_names
            and s.task.strip()
            and all(dep in self.accepted for dep in s.depends_on)
        ):
            return s
        return None


def _unknown_worker(s: Subtask, workers: set[str]) -> str:
    return (
        f"subtask '{clip(s.id)}' names unknown worker '{clip(s.worker)}'"
        f"{did_you_mean(s.worker, workers)}; available workers: {_quote_list(workers)}."
    )


def _unknown_dependency(s: Subtask, dep: str, ids: set[str]) -> str:
    return (
        f"subtask '{clip(s.id)}' depends on unknown subtask '{clip(dep)}'{did_you_mean(dep, ids)}."
    )


def _cycle_problems(plan: Plan) -> list[str]:
    """One sentence per dependency cycle (per strongly connected group), named in order."""
    order: dict[str, int] = {}
    for i, s in enumerate(plan.subtasks):
        order.setdefault(s.id, i)
    g: nx.DiGraph = nx.DiGraph()
    for s in plan.subtasks:
        g.add_node(s.id)
        for dep in s.depends_on:
            if dep in order and dep != s.id:
                g.add_edge(s.id, dep)  # s waits for dep
    out: list[str] = []
    groups = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
    for group in sorted(groups, key=lambda c: min(order[n] for n in c)):
        start = min(group, key=order.__getitem__)
        cycle = nx.find_cycle(g.subgraph(group), source=start)
        path = [u for u, _ in cycle]
        # Start the cycle at its earliest subtask in plan order, so messages are stable.
        i = path.index(min(path, key=order.__getitem__))
        path = path[i:] + path[:i]
        names = clip(" -> ".join([*path, path[0]]))
        out.append(
            f"the plan has a dependency cycle: {names} (each subtask depends on the next), "
            "so none of them could ever start."
        )
    return out


def validate_plan(
    plan: Plan,
    workers: Iterable[str],
    *,
    max_subtasks: int = DEFAULT_MAX_SUBTASKS,
    reserved: Iterable[str] = (),
    prefix: str = "invalid plan",
) -> Plan:
    """Return `plan` if valid; else raise InvalidPlan listing every problem."""
    problems = plan_problems(plan, workers, max_subtasks=max_subtasks, reserved=reserved)
    if problems:
        raise InvalidPlan(problems, prefix=prefix)
    return plan


def schema_problems(exc: ValidationError, limit: int = 8) -> list[str]:
    """A pydantic validation error as short sentences naming the field at fault."""
    out: list[str] = []
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors[:limit]:
        loc = ""
        for part in err.get("loc", ()):
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = str(err.get("msg", "invalid value"))
        msg = msg[0].lower() + msg[1:] if msg else msg
        out.append(f"{clip(loc or 'the plan')}: {clip(msg)}.")
    more = len(errors) - limit
    if more > 0:
        out.append(f"({more:,} more schema errors.)")
    return out


# ---------------------------------------------------------------------------- compilation
def literal(text: str) -> str:
    """Text placed in a prompt template verbatim (its braces are not placeholders)."""
    return text.replace("{", "{{").replace("}", "}}")


def subtask_nodes(
    plan: Plan, workers: Mapping[str, Agent], *, planned_by: str | None = None
) -> list[AgentTask]:
    """One AgentTask per subtask, named by subtask id, wired by depends_on.

    A worker sees its task and (appended as labelled context) the outputs of the subtasks it
    depends on; it does not see the plan, other workers or the original request.
    """
    return [subtask_node(s, workers, planned_by=planned_by) for s in plan.subtasks]


def subtask_node(
    s: Subtask, workers: Mapping[str, Agent], *, planned_by: str | None = None
) -> AgentTask:
    """The node for one subtask (the same whether it came from a whole or a streamed plan)."""
    tags = {"role": "subtask", "worker": s.worker}
    if planned_by:
        tags["planned_by"] = planned_by
    return AgentTask(
        name=s.id,
        agent=workers[s.worker],
        prompt=literal(s.task),
        depends_on=tuple(dict.fromkeys(s.depends_on)),
        tags=tags,
    )


def describe_plan(plan: Plan) -> str:
    """The plan as a short readable list (for prompts and terminals)."""
    lines = []
    for s in plan.subtasks:
        after = f" (after {', '.join(s.depends_on)})" if s.depends_on else ""
        lines.append(f"- {s.id} [{s.worker}]{after}: {s.task}")
    return "\n".join(lines)


def synthesis_prompt(task: str | None, plan_text: str, instructions: str | None) -> str:
    """The synthesizer's prompt template. `plan_text` is already template-safe."""
    head = f"Original task: {literal(task)}\n\n" if task else ""
    how = (
        f"Synthesis instructions: {literal(instructions)}\n\n"
        if instructions is not None
        else "Follow the plan's synthesis_instructions.\n\n"
    )
    return (
        f"{head}Combine the outputs of the subtasks below into one final result.\n\n{how}"
        f"The plan the subtasks came from:\n\n{plan_text}"
    )


def plan_to_graph(
    plan: Plan,
    workers: Mapping[str, Agent],
    *,
    synthesizer: Agent | None = None,
    task: str | None = None,
    name: str = "plan",
    max_subtasks: int = DEFAULT_MAX_SUBTASKS,
    simulator: Any = None,
) -> Graph:
    """A static Graph for a plan: one node per subtask plus a synthesis node that receives
    every subtask's output and the synthesis instructions. Raises InvalidPlan."""
    validate_plan(plan, workers, max_subtasks=max_subtasks, reserved=(SYNTHESIS_NODE,))
    graph = Graph(name, simulator=simulator)
    for node in subtask_nodes(plan, workers):
        graph.add(node)
    graph.add(
        AgentTask(
            name=SYNTHESIS_NODE,
            agent=synthesizer or default_synthesizer(),
            prompt=synthesis_prompt(
                task, literal(describe_plan(plan)), plan.synthesis_instructions
            ),
            depends_on=tuple(s.id for s in plan.subtasks),
            tags={"role": "synthesizer"},
        )
    )
    return graph


def plan_expansion(
    plan: Plan,
    workers: Mapping[str, Agent],
    *,
    planned_by: str = PLAN_NODE,
    synthesis: str = SYNTHESIS_NODE,
) -> Expansion:
    """What a planner node adds to the running graph: the subtask nodes, and an edge from
    each of them into the (already present, not yet started) synthesis node."""
    nodes = subtask_nodes(plan, workers, planned_by=planned_by)
    return Expansion(nodes=list(nodes), edges=[(n.name, synthesis) for n in nodes])


def default_synthesizer() -> Agent:
    return Agent(
        "synthesizer", model=DEFAULT_STRONG_MODEL, system=SYNTHESIZER_SYSTEM, max_tokens=4096
    )


# ---------------------------------------------------------------------------- plan files
def save_plan(
    plan: Plan,
    path: str | os.PathLike[str],
    *,
    task: str | None = None,
    workers: str | None = None,
) -> Path:
    """Write a plan file atomically: the plan, plus the task and workers module it was made for."""
    target = Path(path)
    data: dict[str, Any] = {}
    if task is not None:
        data["task"] = task
    if workers is not None:
        data["workers"] = workers
    data.update(plan.model_dump(mode="json"))
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@dataclass
class PlanFile:
    """A plan read from disk, with what it records about where it came from."""

    plan: Plan
    path: Path
    task: str | None = None
    workers: str | None = None


def read_plan(path: str | os.PathLike[str]) -> PlanFile:
    """Parse a plan file. Malformed JSON or a schema error raises PlanError (one sentence)."""
    p = Path(path)
    where = f"plan file '{clip(p)}'"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{where} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{where} cannot be read: {clip(exc)}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise PlanError(f"{where} is nested too deeply to be a plan.") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise PlanError(f"{where} holds a value Python will not read: {clip(exc)}.") from None
    if not isinstance(data, dict):
        raise PlanError(
            f"{where} must hold a JSON object with 'subtasks' and 'synthesis_instructions', "
            f"not a {type(data).__name__}."
        )
    meta = {k: data.pop(k) for k in ("task", "workers") if k in data}
    for key in ("task", "workers"):
        if key in meta and not isinstance(meta[key], str | None):
            raise PlanError(f"{where}: '{key}' must be a string.")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(
            f"{where} does not match the plan schema: {' '.join(schema_problems(exc))}"
        ) from None
    except RecursionError:
        raise PlanError(f"{where} is nested too deeply to be a plan.") from None
    return PlanFile(plan=plan, path=p, task=meta.get("task"), workers=meta.get("workers"))


# ---------------------------------------------------------------------------- workers modules
@dataclass
class Team:
    """What a workers module provides: `workers` (required), optional `planner`,
    `synthesizer`, `simulator` (offline provider) and `max_subtasks`."""

    workers: dict[str, Agent]
    path: Path
    planner: Agent | None = None
    synthesizer: Agent | None = None
    simulator: Any = None
    max_subtasks: int = DEFAULT_MAX_SUBTASKS


def load_team(path: str | os.PathLike[str]) -> Team:
    """Import a workers module (`workers = {"name": Agent(...), ...}`, see `Team`)."""
    p = Path(path)
    module = load_module(p, "workers module")
    raw = getattr(module, "workers", None)
    if isinstance(raw, list | tuple):
        raw = {a.name: a for a in raw if isinstance(a, Agent)} if raw else raw
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(
            f"{p}: no workers found (define a module-level `workers = {{'name': Agent(...)}}`)."
        )
    workers: dict[str, Agent] = {}
    for name, agent in raw.items():
        if not isinstance(agent, Agent):
            raise UserError(f"{p}: worker '{name}' must be an Agent, not {type(agent).__name__}.")
        workers[str(name)] = agent
    planner = getattr(module, "planner", None)
    synthesizer = getattr(module, "synthesizer", None)
    for label, value in (("planner", planner), ("synthesizer", synthesizer)):
        if value is not None and not isinstance(value, Agent):
            raise UserError(f"{p}: `{label}` must be an Agent, not {type(value).__name__}.")
    max_subtasks = getattr(module, "max_subtasks", DEFAULT_MAX_SUBTASKS)
    return Team(
        workers=workers,
        path=p,
        planner=planner,
        synthesizer=synthesizer,
        simulator=getattr(module, "simulator", None),
        max_subtasks=int(max_subtasks),
    )


def load_plan_graph(
    target: str | os.PathLike[str], workers: str | os.PathLike[str] | None = None, **_: Any
) -> Graph:
    """A runnable Graph from a plan file. `workers` is the workers module; without it, the
    module the plan file records (written by `dagagents plan`) is used."""
    pf = read_plan(target)
    team_path = workers if workers is not None else _recorded_workers(pf)
    if team_path is None:
        raise PlanError(
            f"plan file '{pf.path}' does not say which workers run it; pass --workers "
            "(a Python module defining `workers = {'name': Agent(...)}`)."
        )
    team = load_team(team_path)
    try:
        return plan_to_graph(
            pf.plan,
            team.workers,
            synthesizer=team.synthesizer,
            task=pf.task,
            name=pf.path.stem,
            max_subtasks=team.max_subtasks,
            simulator=team.simulator,
        )
    except InvalidPlan as exc:
        raise InvalidPlan(exc.problems, prefix=f"plan file '{pf.path}' is invalid") from None


def _recorded_workers(pf: PlanFile) -> str | None:
    if not pf.workers:
        return None
    for candidate in (Path(pf.workers), pf.path.parent / pf.workers):
        if candidate.is_file():
            return str(candidate)
    raise PlanError(
        f"plan file '{pf.path}' was made for workers module '{pf.workers}', which does not "
        "exist here; pass --workers."
    )


__all__ = [
    "DEFAULT_MAX_SUBTASKS",
    "InvalidPlan",
    "Plan",
    "PlanFile",
    "Subtask",
    "Team",
    "describe_plan",
    "load_plan_graph",
    "load_module",
    "load_team",
    "plan_expansion",
    "plan_problems",
    "plan_to_graph",
    "read_plan",
    "save_plan",
    "SubtaskReader",
    "streamed_subtasks",
    "validate_plan",
]
