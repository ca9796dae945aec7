"""Malformed plans and graph files: each is one sentence and exit 2, however large or deep.

Deep nesting, huge integers, a graph factory that raises or wants arguments, a plan far over
`max_subtasks`, thousands of problems, megabyte-long names: none gives a traceback, a minute
of validation or a megabyte of error text.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_dagagents

from dagagents.errors import QUOTE_LIMIT, clip
from dagagents.model.plan import (
    MAX_LISTED_PROBLEMS,
    InvalidPlan,
    Plan,
    Subtask,
    plan_problems,
    validate_plan,
)

WORKERS = str(ROOT / "graphs" / "workers.py")


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dagagents(cwd, *args, timeout=180)


def one_sentence_exit_2(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr


def test_plan_file_nested_100k_deep_is_one_sentence(tmp_path: Path) -> None:
    depth = 100_000
    (tmp_path / "plan.json").write_text(
        '{"subtasks": ' + "[" * depth + "]" * depth + ', "synthesis_instructions": "x"}'
    )
    proc = cli(tmp_path, "run", "plan.json", "--workers", WORKERS)
    one_sentence_exit_2(proc, "plan file 'plan.json' is nested too deeply")


def test_plan_file_with_a_5000_digit_integer_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text(
        '{"subtasks": [], "synthesis_instructions": "x", "n": 1' + "0" * 5000 + "}"
    )
    proc = cli(tmp_path, "run", "plan.json", "--workers", WORKERS)
    one_sentence_exit_2(proc, "plan file 'plan.json' holds a value Python will not read")
    assert len(proc.stderr) < 1000


def test_graph_factory_that_raises_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text("def graph():\n    raise RuntimeError('no config found')\n")
    proc = cli(tmp_path, "run", "g.py")
    one_sentence_exit_2(proc, "g.py: calling graph() raised RuntimeError: no config found.")


def test_graph_factory_that_needs_an_argument_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text("def graph(name, size=3):\n    pass\n")
    proc = cli(tmp_path, "render", "g.py")
    one_sentence_exit_2(proc, "'graph' is a function that needs arguments (name)")


def test_graph_factory_that_recurses_forever_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text("def graph():\n    return graph()\n")
    proc = cli(tmp_path, "run", "g.py")
    one_sentence_exit_2(proc, "calling graph() recursed too deeply")


def unknown_deps_plan(n: int) -> Plan:
    return Plan(
        subtasks=[
            Subtask(f"s{i}", "researcher", "do it", depends_on=[f"missing{i}"]) for i in range(n)
        ],
        synthesis_instructions="combine",
    )


def test_plan_over_max_subtasks_is_reported_for_that_alone() -> None:
    problems = plan_problems(unknown_deps_plan(10_000), ["researcher"], max_subtasks=50)
    assert problems == [
        "the plan has 10,000 subtasks, more than the limit of 50 (max_subtasks); merge "
        "related subtasks."
    ]


def test_thousands_of_problems_list_ten_and_count_the_rest() -> None:
    problems = plan_problems(unknown_deps_plan(2000), ["researcher"], max_subtasks=5000)
    assert len(problems) == MAX_LISTED_PROBLEMS + 1
    assert problems[-1] == "(and 1,990 more.)"
    assert problems[0] == "subtask 's0' depends on unknown subtask 'missing0'."


def test_plan_file_with_2000_unknown_dependencies_is_one_short_sentence(tmp_path: Path) -> None:
    plan = unknown_deps_plan(2000)
    (tmp_path / "plan.json").write_text(json.dumps(plan.model_dump()))
    proc = cli(tmp_path, "run", "plan.json", "--workers", WORKERS)
    one_sentence_exit_2(proc, "2,000 subtasks, more than the limit of")
    assert len(proc.stderr) < 1000


def test_huge_user_strings_are_clipped_in_messages() -> None:
    huge = "x" * 1_000_000
    plan = Plan(
        subtasks=[Subtask("a" * 500_000, huge, "task", depends_on=["b" * 500_000])],
        synthesis_instructions="combine",
    )
    with pytest.raises(InvalidPlan) as info:
        validate_plan(plan, ["researcher"])
    message = str(info.value)
    assert len(message) < 10 * (QUOTE_LIMIT + 100)
    assert clip(huge) in message and "(1,000,000 characters)" in message


def test_plan_file_with_a_megabyte_field_name_is_clipped(tmp_path: Path) -> None:
    data = {"subtasks": [], "synthesis_instructions": "x", "k" * 1_000_000: 1}
    (tmp_path / "plan.json").write_text(json.dumps(data))
    proc = cli(tmp_path, "run", "plan.json", "--workers", WORKERS)
    one_sentence_exit_2(proc, "does not match the plan schema")
    assert len(proc.stderr) < 2000
