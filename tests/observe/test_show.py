"""`dagagents show` and the report's outputs, as a user reads them after a run: agent, step,
expanded (orchestrator-planned) and cached nodes; `--prompt` prints exactly what was sent."""

from __future__ import annotations

import html
import json
import subprocess
from pathlib import Path

from conftest import run_dagagents

from dagagents import Agent, Graph, Orchestrator, SimulatedProvider

SECRET = "sk-ant-test-never-shown-0123456789"


def show(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dagagents(
        tmp_path,
        "show",
        *args,
        "--store",
        str(tmp_path / "st"),
        timeout=120,
        ANTHROPIC_API_KEY=SECRET,
    )


def build(tmp_path: Path) -> tuple[Graph, SimulatedProvider]:
    orch = Orchestrator(workers={"researcher": "You research.", "writer": "You write."})
    g = orch.graph("Write about owls.", name="owls")
    writer = Agent("poet", model="claude-haiku-4-5", system="You are terse.", max_tokens=60)
    g.task("haiku", writer, "A haiku about owls.")
    g.task("title", writer, "Title for: {haiku}", depends_on=["haiku"])

    @g.step
    def words(title: str) -> dict[str, int]:
        return {"words": len(title.split())}

    return g, orch.simulated_provider(time_scale=0)


def test_show_every_kind_of_node(tmp_path: Path) -> None:
    g, sim = build(tmp_path)
    first = g.run(provider=sim, store=tmp_path / "st")
    assert first.ok, first.errors
    planned = [n for n in first.outputs if n not in g.specs]
    assert planned, "the orchestrator expanded the graph"

    listing = show(tmp_path)
    assert listing.returncode == 0, listing.stderr
    for name in ("plan", "synthesis", "haiku", "title", "words", *planned):
        assert name in listing.stdout

    # An agent node prints its exact output; --prompt adds the system prompt and the rendered
    # prompt with the dependency's output in it.
    title = show(tmp_path, "title")
    assert title.returncode == 0, title.stderr
    assert title.stdout.strip() == first.outputs["title"].strip()
    sent = show(tmp_path, "title", "--prompt")
    assert "You are terse." in sent.stdout
    assert f"Title for: {first.outputs['haiku']}" in sent.stdout
    assert SECRET not in sent.stdout + sent.stderr

    # A step's output is JSON; an expanded node's prompt is its planned task.
    step = show(tmp_path, "words", "--json")
    assert json.loads(step.stdout)["output"] == first.outputs["words"]
    worker = json.loads(show(tmp_path, planned[0], "--json").stdout)
    assert worker["output"] == first.outputs[planned[0]]
    assert worker["prompt"] and worker["status"] == "done"

    # A rerun is all cached: the same outputs and the prompts that produced them.
    second = g.run(provider=sim, store=tmp_path / "st")
    assert set(second.status.values()) == {"cached"}
    run_id = second.run_id
    cached = json.loads(show(tmp_path, run_id, "title", "--json").stdout)
    assert cached["status"] == "cached"
    assert cached["output"] == first.outputs["title"]
    assert cached["prompt"] == f"Title for: {first.outputs['haiku']}"
    everything = json.loads(show(tmp_path, run_id, "--json").stdout)
    assert {n["node"] for n in everything["nodes"]} == set(first.outputs)
    assert SECRET not in json.dumps(everything)


def test_show_names_what_is_wrong(tmp_path: Path) -> None:
    g = Graph("bad")
    agent = Agent("a", model="claude-haiku-4-5", max_tokens=20)
    g.task("ok", agent, "fine")

    @g.step
    def boom(ok: str) -> str:
        raise ValueError("no owls today")

    @g.step
    def after(boom: str) -> str:
        return boom

    g.run(provider=SimulatedProvider(time_scale=0), store=tmp_path / "st")
    unknown = show(tmp_path, "latest", "okk")
    assert unknown.returncode == 2
    assert "no node 'okk'" in unknown.stderr and "did you mean 'ok'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    failed = show(tmp_path, "boom")
    assert failed.returncode == 1
    assert "no owls today" in failed.stderr and "Traceback" not in failed.stderr
    skipped = show(tmp_path, "after")
    assert "skipped because boom" in skipped.stderr
    listing = show(tmp_path)
    assert "no owls today" in listing.stdout


def test_report_has_outputs_and_prompts(tmp_path: Path) -> None:
    g, sim = build(tmp_path)
    result = g.run(provider=sim, store=tmp_path / "st")
    out = tmp_path / "r.html"
    proc = run_dagagents(
        Path.cwd(), "report", "--store", str(tmp_path / "st"), "-o", str(out), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert 'id="out-title"' in page and 'id="out-words"' in page
    assert html.escape(result.outputs["haiku"]) in page
    assert html.escape(f"Title for: {result.outputs['haiku']}") in page


def test_show_mapped_and_loop_nodes(tmp_path: Path) -> None:
    g = Graph("lang", simulator=SimulatedProvider(time_scale=0))
    writer = Agent("w", model="claude-haiku-4-5", system="Be brief.", max_tokens=40)

    @g.step
    def topics() -> list[str]:
        return ["owls", "larks"]

    g.map("notes", writer, "A line about {item}.", over="topics")

    body = Graph("round")
    body.input("draft", default="start")
    body.task("better", writer, "Improve: {draft}")
    g.loop("polish", body, max_rounds=2, carry={"draft": "better"})
    result = g.run(store=tmp_path / "st")
    assert result.ok, result.errors

    mapped = json.loads(show(tmp_path, "notes[1]", "--json").stdout)
    assert mapped["output"] == result.outputs["notes[1]"]
    assert mapped["prompt"] == "A line about larks."
    gathered = json.loads(show(tmp_path, "notes", "--json").stdout)
    assert gathered["output"] == result.outputs["notes"]
    rounds = [n for n in result.outputs if n.startswith("polish[")]
    assert rounds, result.outputs.keys()
    last = json.loads(show(tmp_path, rounds[-1], "--json").stdout)
    assert last["output"] == result.outputs[rounds[-1]]
    listing = show(tmp_path)
    assert "notes[0]" in listing.stdout and rounds[0] in listing.stdout
