"""No start-up stall (issue 15): `dagagents run` on the simulated provider starts its first node
without importing what the run does not use, and the CLI still offers every command.

What a process has imported is asserted, never how long it took (speed lives in
`benchmarks/startup.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, cli_env, dagagents_cmd, run_dagagents

# Heavy packages a simulated run never needs: the SDK (and its HTTP client), plotting,
# rendering, the web view, Redis, OpenTelemetry, Dask, retries (loaded at the first retry),
# numpy (orjson would load it for a pydantic output), and rich with -q.
NOT_BEFORE_FIRST_NODE = {
    "anthropic",
    "httpx",
    "matplotlib",
    "numpy",
    "graphviz",
    "starlette",
    "uvicorn",
    "sse_starlette",
    "redis",
    "opentelemetry",
    "dask",
    "distributed",
    "tenacity",
    "rich",
}

PROBE_GRAPH = """
import gc, json, os, sys

from pydantic import BaseModel

from dagagents import Agent, Graph, SimulatedProvider


class Verdict(BaseModel):
    ok: bool
    why: str


def _modules(when: str) -> None:
    out = os.path.join(os.environ["PROBE_DIR"], when + ".json")
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), "gc": gc.get_stats(), "collecting": gc.isenabled(),
                   "frozen": gc.get_freeze_count()}, f)


graph = Graph("startup-probe", simulator=SimulatedProvider(time_scale=0.01))


@graph.step
def first() -> str:
    _modules("first")
    return "the first node"


graph.task("judge", Agent("judge", max_tokens=50), "Judge {first}.", output=Verdict)


@graph.step
def last(judge: Verdict) -> str:
    _modules("last")
    return judge.why
"""


def _roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in json.loads(path.read_text())["modules"]}


def test_a_simulated_cli_run_imports_nothing_heavy_before_its_first_node(tmp_path: Path) -> None:
    graph = tmp_path / "probe.py"
    graph.write_text(PROBE_GRAPH)
    cmd = dagagents_cmd("run", str(graph), "--provider", "simulated", "--no-store", "-q")
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=cli_env(PROBE_DIR=str(tmp_path)), timeout=120
    )
    assert done.returncode == 0, done.stderr
    at_first = _roots(tmp_path / "first.json")
    assert at_first & NOT_BEFORE_FIRST_NODE == set()
    assert {"dagagents", "pydantic"} <= at_first  # the probe saw a real run
    # structured output on the simulated provider: the SDK is never imported, even at the end
    assert {"anthropic", "httpx"} & _roots(tmp_path / "last.json") == set()
    # The collector paused for start-up: no full collection walked the import heap before the
    # first node, collections run again during the run, and the run froze the heap it began with.
    seen = json.loads((tmp_path / "first.json").read_text())
    assert seen["gc"][2]["collections"] == 0
    assert seen["collecting"] and seen["frozen"] > 0


def test_every_command_is_registered_by_the_module_the_entry_point_imports_for_it() -> None:
    """`dagagents NAME` imports only COMMANDS[NAME]'s module: the table must say where each
    command really lives (checked in a fresh process, where nothing else registered them)."""
    code = """
import json
from dagagents.cli.app import app
from dagagents.cli.commands import load_all
load_all()
found = {c.name or c.callback.__name__: c.callback.__module__ for c in app.registered_commands}
found |= {g.name: "dagagents.cli.commands.trace" for g in app.registered_groups}
print(json.dumps(found))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    registered = json.loads(done.stdout)
    from dagagents.cli.commands import COMMANDS

    assert {name: f"dagagents.cli.commands.{m}" for name, m in COMMANDS.items()} == registered


def test_help_still_lists_every_command_and_a_typo_gets_a_suggestion() -> None:
    from dagagents.cli.commands import COMMANDS

    shown = run_dagagents(Path.cwd(), "--help", timeout=60)
    assert shown.returncode == 0, shown.stderr
    listed = {line.split()[0] for line in shown.stdout.splitlines() if line.startswith("  ")}
    assert set(COMMANDS) <= listed
    typo = run_dagagents(ROOT, "rn", "graphs/fanout.py", timeout=60)
    assert typo.returncode == 2
    assert "No such command 'rn'" in typo.stderr and "run" in typo.stderr


def test_the_facade_loads_public_names_on_first_use() -> None:
    code = """
import sys
import dagagents
assert "networkx" not in sys.modules and "pydantic" not in sys.modules, "eager facade"
assert set(dagagents.__all__) <= set(dir(dagagents))
for name in dagagents.__all__:
    if name not in ("AnthropicProvider", "DaskExecutor"):  # the SDK / an extra
        getattr(dagagents, name)
from dagagents import Graph
from dagagents.model.graph import Graph as Same
assert Graph is Same and dagagents.run.__module__ == "dagagents.engine.run"
try:
    dagagents.nothing_like_this
except AttributeError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "module 'dagagents' has no attribute 'nothing_like_this'"


def test_numpy_outputs_still_encode_once_numpy_is_loaded() -> None:
    """The codec leaves numpy unloaded for a pydantic output, and still encodes arrays."""
    code = """
import sys
from pydantic import BaseModel
from dagagents.store import codec

class M(BaseModel):
    x: int

codec.encode({"m": M(x=1)})
print("numpy" in sys.modules)
import numpy
print(codec.encode({"a": numpy.arange(3)}).decode())
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["False", '{"a":[0,1,2]}']
