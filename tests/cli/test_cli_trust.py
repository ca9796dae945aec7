"""What a user sees is what happened: limits refused up front, text printed literally, output
files where the user is, errors even with -q, formats in any case, money rounded."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
from conftest import run_dagagents
from rich.console import Console

from dagagents import Graph, RateLimits
from dagagents.errors import UserError
from dagagents.observe.progress import LiveProgress, summary_table
from dagagents.observe.runs import NodeRecord, RunResult

cli = functools.partial(run_dagagents, timeout=180)


SIMPLE = """
from dagagents import Graph
graph = Graph({name!r})

@graph.step
def one() -> int:
    return 1

@graph.step
def two(one: int) -> int:
    return one + 1
"""


# ------------------------------------------------------------ 5: limits
@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--rpm", "nan"),
        ("--itpm", "nan"),
        ("--max-cost", "nan"),
        ("--otpm", "inf"),
        ("--rpm", "0"),
        ("--max-cost", "-1"),
        ("--timeout", "nan"),
        ("--timeout", "0"),
    ],
)
def test_non_finite_or_non_positive_limits_are_refused_in_one_sentence(
    tmp_path: Path, flag: str, value: str
) -> None:
    (tmp_path / "g.py").write_text(SIMPLE.format(name="limits"))
    proc = cli(tmp_path, "run", "g.py", flag, value)
    assert proc.returncode == 2, proc.stderr
    assert f"{flag} must be a positive finite number, got {float(value)!r}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".dagagents").exists()  # refused before anything ran


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, -5.0])
def test_non_finite_or_non_positive_limits_are_refused_by_the_api(value: float) -> None:
    g = Graph("api_limits")
    g.add_step("one", lambda: 1)
    for field in ("rpm", "itpm", "otpm"):
        with pytest.raises(UserError, match=f"{field} must be a positive finite number"):
            RateLimits(**{field: value})
    with pytest.raises(UserError, match="max_cost_usd must be a positive finite number"):
        g.run(store=None, max_cost_usd=value)


# ------------------------------------------------------------ 10: output names
def test_graph_name_cannot_choose_where_a_default_png_is_written(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "pwned"
    work = tmp_path / "work"
    work.mkdir()
    (work / "g.py").write_text(SIMPLE.format(name=str(outside)))
    proc = cli(work, "render", "g.py", "-f", "png")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "outside").exists()
    written = [p.name for p in work.glob("*.png")]
    assert len(written) == 1 and "/" not in written[0] and written[0].endswith("pwned.png")


def test_tampered_manifest_graph_name_cannot_choose_where_a_png_is_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "g.py").write_text(SIMPLE.format(name="fine"))
    assert cli(tmp_path, "run", "g.py").returncode == 0
    manifest_path = next((tmp_path / ".dagagents" / "runs").glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    target = tmp_path / "elsewhere" / "pwned"
    manifest["graph"] = str(target)
    manifest_path.write_text(json.dumps(manifest))
    proc = cli(tmp_path, "render", "latest", "-f", "png")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "elsewhere").exists()
    assert [p.name for p in tmp_path.glob("*.png")] == [
        str(target).strip("/").replace("/", "_") + ".png"
    ]


def test_bench_default_png_name_is_sanitised(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(SIMPLE.format(name="../up/../bench me"))
    proc = cli(tmp_path, "bench", "g.py")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.glob("*.png")] == ["bench-.._up_.._bench_me.png"]
    assert not (tmp_path.parent / "up").exists()


# ------------------------------------------------------------ 12: Rich markup
MARKUP = "could not open [data/in.csv] [/x] [bold]loud[/bold] [red]"
BROKEN = f"""
from dagagents import Graph
graph = Graph("g[v2] [bold]x[/bold]")

@graph.step
def load() -> str:
    raise ValueError({MARKUP!r})

@graph.step
def after(load: str) -> str:
    return load
"""


def test_error_text_with_brackets_is_printed_literally(tmp_path: Path) -> None:
    (tmp_path / "graph[v2].py").write_text(BROKEN)
    proc = cli(tmp_path, "run", "graph[v2].py")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr
    assert f"failed: load: ValueError: {MARKUP}" in proc.stderr
    assert f"failed   load: ValueError: {MARKUP}" in proc.stdout  # the plain live line
    assert "running g[v2] [bold]x[/bold] (2 nodes)" in proc.stdout
    assert "[/x]" in proc.stdout.split("run ", 1)[1]  # the summary table's note too
    summary = cli(tmp_path, "trace", "summary")
    assert summary.returncode == 0, summary.stderr
    assert "[/x] [bold]loud[/bold]" in summary.stdout


@pytest.mark.parametrize("name", ["data[/old].py", "graph[v2].py", "[bold]x[/bold].py"])
def test_file_names_with_brackets_are_printed_literally(tmp_path: Path, name: str) -> None:
    proc = cli(tmp_path, "run", name)
    assert proc.returncode == 2, proc.stderr
    assert name in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dask_hint_keeps_its_extra_in_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from dagagents.cli.app import fail

    with pytest.raises(typer.Exit):
        fail("the Dask executor needs Dask distributed: pip install 'dagagents[dask]'.")
    assert "pip install 'dagagents[dask]'" in capsys.readouterr().err


def test_summary_table_and_live_view_print_text_literally() -> None:
    g = Graph("lit")

    def boom() -> None:
        raise ValueError(MARKUP)

    g.add_step("boom", boom)
    result = g.run(store=None)
    console = Console(record=True, width=300, markup=True)  # a library user's console
    console.print(summary_table(result))
    view = LiveProgress(console, "[bold]title[/]")
    view({"event": "run_start", "nodes": 1})
    view({"event": "node_start", "node": "boom"})
    view({"event": "node_error", "node": "boom", "error": MARKUP})
    console.print(view.render())
    text = console.export_text()
    assert text.count(MARKUP) == 2


# ------------------------------------------------------------ 19: -q
def test_quiet_run_still_prints_its_errors(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(BROKEN)
    proc = cli(tmp_path, "run", "g.py", "-q")
    assert proc.returncode == 1
    assert f"failed: load: ValueError: {MARKUP}" in proc.stderr
    assert proc.stdout == ""


# ------------------------------------------------------------ 23: formats, version, money
def test_formats_are_case_insensitive(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(SIMPLE.format(name="caps"))
    proc = cli(tmp_path, "render", "g.py", "-f", "PNG")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "caps.png").read_bytes()[:4] == b"\x89PNG"
    mermaid = cli(tmp_path, "render", "g.py", "-f", "Mermaid")
    assert mermaid.returncode == 0 and "flowchart" in mermaid.stdout


def test_version_flag_prints_the_version(tmp_path: Path) -> None:
    from dagagents import __version__

    proc = cli(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"dagagents {__version__}"


def test_money_is_rounded_to_a_millionth_in_results() -> None:
    records = {
        f"n{i}": NodeRecord(name=f"n{i}", status="done", agent="a", model="m", cost_usd=cost)
        for i, cost in enumerate((0.1, 0.2, 0.009642))
    }
    result = RunResult(
        graph="g",
        run_id="r",
        records=records,
        outputs={},
        wall=1.0,
        concurrency=1,
        provider="simulated",
    )
    assert repr(sum(r.cost_usd for r in records.values())) != "0.309642"  # float noise
    assert repr(result.cost_by("model")) == "{'m': 0.309642}"
    assert repr(result.cost_by("agent")) == "{'a': 0.309642}"
    assert repr(result.cost_usd) == "0.309642"


# ------------------------------------------------------------ 29: the demo's closing hint
def test_demo_hint_points_estimate_at_the_demos_store(tmp_path: Path) -> None:
    import re
    import shlex

    from conftest import ROOT

    graph = str(ROOT / "graphs" / "market_report.py")
    demo = cli(tmp_path, "demo", graph, "--out", "out", DAGAGENTS_SIM_TIME_SCALE="0.05")
    assert demo.returncode == 0, demo.stderr
    hint = re.search(r"dagagents estimate \S+ --store \S+", demo.stdout)
    assert hint is not None, demo.stdout[-2000:]
    assert hint.group(0).endswith("--store out/store")
    estimate = cli(tmp_path, *shlex.split(hint.group(0))[1:])
    assert estimate.returncode == 0, estimate.stderr
    assert "Not enough to go on" not in estimate.stdout
    assert "synthesis" in estimate.stdout  # the planned subtasks are seen, up to the synthesis


def test_help_texts_keep_their_brackets(tmp_path: Path) -> None:
    proc = cli(tmp_path, "run", "--help", COLUMNS="200")
    assert proc.returncode == 0, proc.stderr
    assert "dagagents[ui]" in proc.stdout
