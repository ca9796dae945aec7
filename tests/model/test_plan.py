"""Plans as data: validation sentences, compilation to a graph, plan files and the plan CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_dagagents

from dagagents import Agent, Plan, PlanError, Subtask
from dagagents.engine.invoke import output_schema
from dagagents.model.plan import (
    InvalidPlan,
    load_plan_graph,
    plan_problems,
    plan_to_graph,
    read_plan,
    save_plan,
    validate_plan,
)

WORKERS = ["researcher", "analyst", "writer"]
AGENTS = {name: Agent(name, system=f"You are the {name}.") for name in WORKERS}


def plan(*subtasks: Subtask, instructions: str = "Combine them.") -> Plan:
    return Plan(subtasks=list(subtasks), synthesis_instructions=instructions)


def problems(p: Plan, **kw: object) -> list[str]:
    return plan_problems(p, WORKERS, reserved=("plan", "synthesis"), **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- models
def test_subtask_positional_and_keyword_forms_are_equal() -> None:
    a = Subtask("size", "researcher", "Estimate the market size.", depends_on=["x"])
    b = Subtask(id="size", worker="researcher", task="Estimate the market size.", depends_on=["x"])
    assert a == b
    assert Subtask("s", "w", "t").depends_on == []


def test_plan_schema_is_usable_as_structured_output() -> None:
    schema = output_schema(Plan)  # what the Anthropic path sends as output_config
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"subtasks", "synthesis_instructions"}
    sub = schema["$defs"]["Subtask"]
    assert sub["additionalProperties"] is False
    assert {"id", "worker", "task"} <= set(sub["required"])


# ----------------------------------------------------------------------------- validation
def test_a_valid_plan_has_no_problems() -> None:
    p = plan(
        Subtask("a", "researcher", "Find facts."),
        Subtask("b", "researcher", "Find more facts."),
        Subtask("c", "analyst", "Analyse.", depends_on=["a", "b"]),
    )
    assert problems(p) == []
    assert validate_plan(p, WORKERS) is p


@pytest.mark.parametrize(
    ("subtasks", "sentence"),
    [
        ([], "the plan has no subtasks; it needs at least one."),
        (
            [Subtask("a", "coder", "Write code.")],
            "subtask 'a' names unknown worker 'coder'; available workers: analyst, "
            "researcher, writer.",
        ),
        (
            [Subtask("a", "writter", "Write.")],
            "subtask 'a' names unknown worker 'writter' (did you mean 'writer'?); available "
            "workers: analyst, researcher, writer.",
        ),
        (
            [Subtask("a", "writer", "x"), Subtask("b", "writer", "y", depends_on=["c"])],
            "subtask 'b' depends on unknown subtask 'c'.",
        ),
        (
            [Subtask("size", "writer", "x"), Subtask("b", "writer", "y", depends_on=["sizes"])],
            "subtask 'b' depends on unknown subtask 'sizes' (did you mean 'size'?).",
        ),
        (
            [Subtask("a", "writer", "x"), Subtask("a", "analyst", "y")],
            "subtask id 'a' is used by 2 subtasks; ids must be unique.",
        ),
        (
            [
                Subtask("a", "writer", "x", depends_on=["c"]),
                Subtask("b", "writer", "y", depends_on=["a"]),
                Subtask("c", "writer", "z", depends_on=["b"]),
            ],
            "the plan has a dependency cycle: a -> c -> b -> a (each subtask depends on the "
            "next), so none of them could ever start.",
        ),
        (
            [Subtask("a", "writer", "x", depends_on=["a"])],
            "subtask 'a' depends on itself.",
        ),
        (
            [Subtask("synthesis", "writer", "x")],
            "subtask id 'synthesis' is reserved for the orchestrator's own node; choose "
            "another id.",
        ),
        (
            [Subtask("market size", "writer", "x")],
            "subtask id 'market size' is not a valid name (use up to 64 letters, digits, '_', "
            "'-' or '.', starting with a letter or '_').",
        ),
        ([Subtask("a", "writer", "  ")], "subtask 'a' has an empty task."),
    ],
)
def test_every_invalid_plan_gives_its_sentence(subtasks: list[Subtask], sentence: str) -> None:
    assert problems(plan(*subtasks)) == [sentence]
    with pytest.raises(PlanError) as info:
        validate_plan(plan(*subtasks), WORKERS, reserved=("plan", "synthesis"))
    assert str(info.value) == f"invalid plan: {sentence}"


def test_more_subtasks_than_max_subtasks() -> None:
    p = plan(*(Subtask(f"s{i}", "writer", "x") for i in range(51)))
    assert problems(p) == [
        "the plan has 51 subtasks, more than the limit of 50 (max_subtasks); merge related "
        "subtasks."
    ]
    assert problems(plan(*(Subtask(f"s{i}", "writer", "x") for i in range(4))), max_subtasks=3)
    assert problems(plan(*(Subtask(f"s{i}", "writer", "x") for i in range(50)))) == []


def test_every_problem_is_reported_at_once_one_sentence_each() -> None:
    p = plan(
        Subtask("a", "coder", "x", depends_on=["b"]),
        Subtask("b", "writer", "y", depends_on=["a", "ghost"]),
        Subtask("d", "writer", "z", depends_on=["e"]),
        Subtask("e", "writer", "z", depends_on=["d"]),
    )
    found = problems(p)
    assert len(found) == 4
    assert found[0].startswith("subtask 'a' names unknown worker 'coder'")
    assert found[1] == "subtask 'b' depends on unknown subtask 'ghost'."
    assert "dependency cycle: a -> b -> a" in found[2]
    assert "dependency cycle: d -> e -> d" in found[3]
    with pytest.raises(InvalidPlan) as info:
        validate_plan(p, WORKERS)
    assert info.value.problems == found


# ----------------------------------------------------------------------------- compilation
def test_two_subtasks_of_one_worker_become_two_nodes_keyed_by_id() -> None:
    p = plan(
        Subtask("us_market", "researcher", "Research the US market."),
        Subtask("eu_market", "researcher", "Research the EU market."),
        Subtask(
            "compare", "analyst", "Compare {both} markets.", depends_on=["us_market", "eu_market"]
        ),
        instructions="Write a {short} memo.",
    )
    g = plan_to_graph(p, AGENTS, task="Compare markets")
    assert sorted(g.specs) == ["compare", "eu_market", "synthesis", "us_market"]
    assert g["us_market"].agent is g["eu_market"].agent is AGENTS["researcher"]
    assert g["compare"].depends_on == ("us_market", "eu_market")
    assert set(g["synthesis"].depends_on) == {"us_market", "eu_market", "compare"}
    g.validate()  # braces in task text are literal, not placeholders
    from dagagents.model.nodes import render_prompt

    text = render_prompt(g["compare"], {"us_market": "US", "eu_market": "EU"})
    assert text.startswith("Compare {both} markets.")
    assert '<input from="us_market">\nUS' in text and '<input from="eu_market">\nEU' in text
    synth = render_prompt(g["synthesis"], dict.fromkeys(g["synthesis"].depends_on, "out"))
    assert "Synthesis instructions: Write a {short} memo." in synth
    assert "Original task: Compare markets" in synth


def test_plan_to_graph_rejects_an_invalid_plan() -> None:
    with pytest.raises(InvalidPlan, match="unknown worker 'coder'"):
        plan_to_graph(plan(Subtask("a", "coder", "x")), AGENTS)


# ----------------------------------------------------------------------------- files
GOOD = plan(
    Subtask("a", "researcher", "Find facts."),
    Subtask("b", "researcher", "Find other facts."),
    Subtask("c", "writer", "Write it up.", depends_on=["a", "b"]),
)

WORKERS_MODULE = """
from dagagents import Agent, SimulatedProvider
workers = {
    "researcher": Agent("researcher", system="You research."),
    "analyst": Agent("analyst", system="You analyse."),
    "writer": Agent("writer", system="You write."),
}
synthesizer = Agent("synth", model="claude-opus-4-6", system="You combine.")
simulator = SimulatedProvider(time_scale=0)
"""


def test_plan_files_round_trip(tmp_path: Path) -> None:
    path = save_plan(GOOD, tmp_path / "sub" / "plan.json", task="T", workers="w.py")
    data = json.loads(path.read_text())
    assert data["task"] == "T" and data["workers"] == "w.py"
    pf = read_plan(path)
    assert pf.plan == GOOD and pf.task == "T" and pf.workers == "w.py"
    assert not list(path.parent.glob(".tmp-*"))  # written via a temp file and a rename


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        ('{"subtasks": [', "is not valid JSON: Expecting value at line 1, column 15."),
        (
            "[1, 2]",
            "must hold a JSON object with 'subtasks' and 'synthesis_instructions', not a list.",
        ),
        (
            '{"subtasks": [{"id": "a", "task": "x"}]}',
            "does not match the plan schema: subtasks[0].worker: field required. "
            "synthesis_instructions: field required.",
        ),
        (
            '{"subtasks": [], "synthesis_instructions": "s", "extra": 1}',
            "does not match the plan schema: extra: extra inputs are not permitted.",
        ),
    ],
)
def test_malformed_plan_files_give_one_sentence(
    tmp_path: Path, content: str, sentence: str
) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(PlanError) as info:
        read_plan(path)
    assert str(info.value) == f"plan file '{path}' {sentence}"


def test_missing_plan_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"plan file '.*nope.json' does not exist\."):
        read_plan(tmp_path / "nope.json")


def test_plan_file_loads_with_recorded_or_given_workers(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text(WORKERS_MODULE)
    save_plan(GOOD, tmp_path / "plan.json", task="T", workers="w.py")
    g = load_plan_graph(str(tmp_path / "plan.json"))
    assert sorted(g.specs) == ["a", "b", "c", "synthesis"]
    assert g["synthesis"].agent.name == "synth"
    save_plan(GOOD, tmp_path / "bare.json")
    with pytest.raises(PlanError, match="does not say which workers run it; pass --workers"):
        load_plan_graph(str(tmp_path / "bare.json"))
    g2 = load_plan_graph(str(tmp_path / "bare.json"), workers=str(tmp_path / "w.py"))
    assert g2["a"].agent.name == "researcher"
    assert g2.run(store=None).ok


# ----------------------------------------------------------------------------- CLI
def cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_dagagents(cwd, *args, timeout=timeout)


def test_cli_plan_writes_a_valid_plan_file(tmp_path: Path) -> None:
    workers = str(ROOT / "graphs" / "workers.py")
    task = "Create a market analysis report on the AI developer tools market in 2024."
    proc = cli(tmp_path, "plan", task, "--workers", workers, "-o", "out/plan.json")
    assert proc.returncode == 0, proc.stderr
    pf = read_plan(tmp_path / "out" / "plan.json")
    assert pf.task == task and pf.workers == workers
    assert len(pf.plan.subtasks) == 7
    assert pf.plan.workers_used() == {"researcher": 3, "analyst": 3, "writer": 1}
    validate_plan(pf.plan, ["researcher", "analyst", "writer"])
    assert "wrote out/plan.json (7 subtasks" in proc.stdout
    # Any other task gets a (default) plan too: offline planning never needs a script per task.
    other = cli(tmp_path, "plan", "Review our onboarding docs", "-w", workers, "-o", "o.json")
    assert other.returncode == 0, other.stderr
    assert [s.worker for s in read_plan(tmp_path / "o.json").plan.subtasks] == [
        "researcher",
        "analyst",
        "writer",
    ]


def test_cli_runs_and_renders_a_plan_file(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text(WORKERS_MODULE)
    save_plan(GOOD, tmp_path / "plan.json", task="T")
    proc = cli(tmp_path, "run", "plan.json", "--workers", "w.py")
    assert proc.returncode == 0, proc.stderr
    assert "4 done" in proc.stdout
    again = cli(tmp_path, "run", "plan.json", "--workers", "w.py")
    assert again.returncode == 0 and "4 cached" in again.stdout
    drawn = cli(tmp_path, "render", "plan.json", "--workers", "w.py")
    assert drawn.returncode == 0, drawn.stderr
    assert "synthesis" in drawn.stdout and "researcher" in drawn.stdout


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        ("{oops", "is not valid JSON"),
        (
            '{"subtasks": [{"id": "a"}], "synthesis_instructions": "s"}',
            "subtasks[0].worker: field required.",
        ),
        (
            json.dumps(
                plan(
                    Subtask("a", "writer", "x", depends_on=["b"]),
                    Subtask("b", "writer", "y", depends_on=["a"]),
                ).model_dump()
            ),
            "is invalid: the plan has a dependency cycle: a -> b -> a",
        ),
        (
            json.dumps(plan(Subtask("a", "coder", "x")).model_dump()),
            "is invalid: subtask 'a' names unknown worker 'coder'; available workers: analyst, "
            "researcher, writer.",
        ),
    ],
)
def test_cli_malformed_plan_files_exit_2_with_the_sentence(
    tmp_path: Path, content: str, sentence: str
) -> None:
    (tmp_path / "w.py").write_text(WORKERS_MODULE)
    (tmp_path / "bad.json").write_text(content)
    proc = cli(tmp_path, "run", "bad.json", "--workers", "w.py")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: plan file 'bad.json' " in proc.stderr
    assert sentence in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_cli_plan_needs_a_workers_module(tmp_path: Path) -> None:
    proc = cli(tmp_path, "plan", "X", "--workers", "missing.py")
    assert proc.returncode == 2
    assert "workers module 'missing.py' does not exist." in proc.stderr
    (tmp_path / "empty.py").write_text("x = 1\n")
    proc = cli(tmp_path, "plan", "X", "--workers", "empty.py")
    assert proc.returncode == 2
    assert "no workers found" in proc.stderr
