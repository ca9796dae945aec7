"""Invalid graphs are refused before anything runs, with one sentence naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_dagagents

from dagagents import Agent, Graph, GraphError
from dagagents.model.nodes import render_prompt

A = Agent("a", model="claude-haiku-4-5")


def test_cycle_is_named_in_order() -> None:
    g = Graph("cyc")
    g.task("x", A, "x", depends_on=["z"])
    g.task("y", A, "y", depends_on=["x"])
    g.task("z", A, "z", depends_on=["y"])
    with pytest.raises(GraphError) as err:
        g.validate()
    msg = str(err.value)
    assert "cycle" in msg
    # The cycle in dependency order, closed: x -> y -> z -> x (starting anywhere on it).
    path = msg.split("cycle ")[1].rstrip(".").split(" -> ")
    assert path[0] == path[-1] and set(path) == {"x", "y", "z"}
    for a, b in zip(path, path[1:], strict=False):
        assert a in g[b].depends_on


def test_unknown_dependency_suggests_a_name() -> None:
    g = Graph("g")
    g.task("size", A, "x")
    g.task("summary", A, "Summarise", depends_on=["siz"])
    with pytest.raises(
        GraphError, match=r"node 'summary' depends on unknown node 'siz' \(did you mean 'size'\?\)"
    ):
        g.validate()


def test_placeholder_must_be_a_dependency() -> None:
    g = Graph("g")
    g.task("size", A, "x")
    g.task("summary", A, "Summarise {size} and {growth}", depends_on=["size"])
    with pytest.raises(
        GraphError, match=r"placeholder '\{growth\}' is not one of its dependencies"
    ):
        g.validate()


def test_escaped_braces_are_literal() -> None:
    g = Graph("g")
    g.task("json", A, 'Answer as {{"a": 1}}')
    g.validate()  # no placeholder to check
    assert render_prompt(g.specs["json"], {}) == 'Answer as {"a": 1}'  # what the agent is sent


def test_duplicate_name() -> None:
    g = Graph("g")
    g.task("size", A, "x")
    with pytest.raises(GraphError, match="duplicate node name 'size'"):
        g.task("size", A, "y")


def test_step_parameter_must_name_a_node() -> None:
    g = Graph("g")
    g.task("summary", A, "x")

    @g.step
    def word_count(summry: str) -> int:
        return len(summry.split())

    with pytest.raises(
        GraphError,
        match=r"step 'word_count' parameter 'summry' names no node \(did you mean 'summary'\?\)",
    ):
        g.validate()


def test_nothing_runs_when_invalid() -> None:
    ran: list[str] = []
    g = Graph("g")

    @g.step
    def first() -> int:
        ran.append("first")
        return 1

    g.add_step("second", lambda **_: 2, depends_on=["missing"])
    with pytest.raises(GraphError):
        g.run(store=None)
    assert ran == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "g.task('a', A, 'x', depends_on=['b'])\ng.task('b', A, 'y', depends_on=['a'])",
            "dependency cycle",
        ),
        ("g.task('a', A, 'Use {b}')", "placeholder '{b}'"),
        ("g.task('a', A, 'x')\ng.task('a', A, 'y')", "duplicate node name 'a'"),
    ],
)
def test_cli_exits_2_with_one_sentence(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(
        "from dagagents import Agent, Graph\nA = Agent('a')\ng = Graph('bad')\n"
        + body
        + "\ngraph = g\n"
    )
    proc = run_dagagents(Path.cwd(), "run", str(path), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".dagagents" / "runs").exists() or not any(
        (tmp_path / ".dagagents" / "runs").iterdir()
    )


def test_cli_missing_file_and_attr(tmp_path: Path) -> None:
    proc = run_dagagents(Path.cwd(), "run", "nope.py", timeout=60)
    assert proc.returncode == 2 and "graph file 'nope.py' does not exist" in proc.stderr
    (tmp_path / "g.py").write_text("x = 1\n")
    proc = run_dagagents(Path.cwd(), "run", "g.py:pipeline", timeout=60)
    assert proc.returncode == 2 and "no Graph named 'pipeline'" in proc.stderr


def test_validate_returns_the_nodes_in_dependency_order() -> None:
    """The run reuses the order the acyclicity check computed for its priorities."""

    async def step(**_: object) -> None:
        return None

    g = Graph("order")
    g.add_step("c", step, depends_on=["b"])
    g.add_step("b", step, depends_on=["a"])
    g.add_step("a", step)
    g.add_step("lone", step)
    order = g.validate()
    assert sorted(order) == ["a", "b", "c", "lone"]
    assert order.index("a") < order.index("b") < order.index("c")
