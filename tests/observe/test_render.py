"""`dagagents render`: Mermaid and DOT always, SVG/PNG through Graphviz, coloured by a run."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import pytest
from conftest import ROOT, cli_env, dagagents_cmd
from eventful import eventful_run

from dagagents import Graph
from dagagents.observe.render import (
    FILL,
    diagram_from_graph,
    diagram_from_run,
    render_bytes,
    to_dot,
    to_mermaid,
)
from dagagents.observe.summary import load_run

FANOUT = str(ROOT / "graphs" / "fanout.py")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("render") / "store"
    eventful_run(path)
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        dagagents_cmd(*args), capture_output=True, text=True, env=env or cli_env(), timeout=120
    )


def test_mermaid_and_dot_of_a_graph_file_need_no_system_dependency() -> None:
    d = diagram_from_graph(Graph.load(FANOUT))
    mermaid = to_mermaid(d)
    assert "flowchart LR" in mermaid
    assert mermaid.count(" --> ") == 5
    assert "synthesis<br/>synthesizer · claude-opus-4-6" in mermaid
    assert "market_size<br/>researcher · claude-sonnet-4-6" in mermaid
    # The predicted critical path ends in the synthesis node and is highlighted.
    assert d.critical[-1] == "synthesis" and "linkStyle" in mermaid
    source = to_dot(d).source
    assert "digraph fanout" in source and source.count(" -> ") == 5
    assert "synthesizer · claude-opus-4-6" in source


@needs_dot
def test_dot_parses_and_svg_is_xml_with_every_node(store: Path) -> None:
    run = load_run("latest", store)
    d = diagram_from_run(run)
    # DOT text round-trips through Graphviz (dot -Tsvg succeeds on it).
    svg_from_source = graphviz.Source(render_bytes(d, "dot").decode()).pipe(format="svg")
    root = ET.fromstring(render_bytes(d, "svg"))
    assert root.tag.endswith("svg")
    ET.fromstring(svg_from_source)
    titles = {el.text for el in root.iter() if el.tag.endswith("title")}
    assert set(run.nodes) <= titles
    text = render_bytes(d, "svg").decode()
    # Coloured by status: failed, skipped, cached and done fills all appear.
    for status in ("done", "cached", "failed", "skipped"):
        assert FILL[status] in text, status
    assert render_bytes(d, "png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_diagram_colours_and_labels(store: Path) -> None:
    d = diagram_from_run(load_run("latest", store))
    assert d.nodes["parse"].status == "failed" and d.nodes["chart"].status == "skipped"
    assert d.nodes["background"].status == "cached"
    assert d.nodes["research"].agent == "tooler"
    assert "retry" in d.nodes["fetch"].detail
    mermaid = to_mermaid(d)
    assert "class " in mermaid and " failed" in mermaid and " skipped" in mermaid
    # The critical path is a chain along real edges.
    assert all((a, b) in set(d.edges) for a, b in zip(d.critical, d.critical[1:], strict=False))


@needs_dot
def test_cli_renders_run_ids_and_graph_files(store: Path, tmp_path: Path) -> None:
    out = cli("render", "latest", "--store", str(store), "-o", str(tmp_path / "run.svg"))
    assert out.returncode == 0, out.stderr
    ET.parse(tmp_path / "run.svg")
    png = cli("render", FANOUT, "-f", "png", "-o", str(tmp_path / "g.png"))
    assert png.returncode == 0, png.stderr
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    mermaid = cli("render", FANOUT)
    assert mermaid.returncode == 0 and mermaid.stdout.lstrip().startswith("---")
    dot = cli("render", FANOUT, "-f", "dot")
    assert dot.returncode == 0
    graphviz.Source(dot.stdout).pipe(format="svg")


def test_cli_colours_a_graph_file_by_its_latest_run(tmp_path: Path) -> None:
    graph_file = tmp_path / "tiny.py"
    graph_file.write_text(
        "from dagagents import Graph\n"
        "graph = Graph('tiny')\n"
        "@graph.step\n"
        "def a() -> int:\n    return 1\n"
        "@graph.step\n"
        "def b(a: int) -> int:\n    raise ValueError('no')\n"
    )
    store = tmp_path / "st"
    ran = cli("run", str(graph_file), "--store", str(store), "-q")
    assert ran.returncode == 1
    out = cli("render", str(graph_file), "--run", "latest", "--store", str(store), "-f", "dot")
    assert out.returncode == 0, out.stderr
    assert FILL["failed"] in out.stdout and FILL["done"] in out.stdout
    wrong = cli("render", FANOUT, "--run", "latest", "--store", str(store))
    assert wrong.returncode == 2 and "no run of graph 'fanout'" in wrong.stderr


def test_cli_errors_are_one_sentence(tmp_path: Path) -> None:
    unknown = cli("render", "no-such-run", "--store", str(tmp_path / "st"))
    assert unknown.returncode == 2 and "neither a graph file" in unknown.stderr
    bad_format = cli("render", FANOUT, "-f", "jpeg")
    assert bad_format.returncode == 2 and "--format 'jpeg'" in bad_format.stderr
    for out in (unknown, bad_format):
        assert "Traceback" not in out.stderr


def test_missing_dot_names_the_package_to_install(tmp_path: Path) -> None:
    # A PATH with the venv's python but no Graphviz.
    bare = tmp_path / "bin"
    bare.mkdir()
    env = cli_env()
    env["PATH"] = str(bare)
    out = cli("render", FANOUT, "-f", "svg", env=env)
    assert out.returncode == 2
    assert "apt-get install graphviz" in out.stderr and "Traceback" not in out.stderr
    # Mermaid and DOT still work without it.
    assert cli("render", FANOUT, "-f", "dot", env=env).returncode == 0
