"""Issue 15: time from process start to the first `node_start` of `dagagents run` (simulated).

    python -m benchmarks.startup [--repeat 7] [--graph graphs/fanout.py]

Each repeat starts a fresh `python -m dagagents run GRAPH --provider simulated --no-store -q
--trace FILE` and reads the first `node_start` event's wall-clock stamp from the trace: the
figure is that stamp minus the moment just before the process was spawned. The same without
`-q` (the plain progress lines, which load rich) is reported beside it. Yardsticks, in the same
run: a bare interpreter (`python -c pass`, spawn to exit), `python -c "import dagagents"`, and
the CPU seconds of importing everything the CLI can import (steadier than wall time on a
shared machine). Target: <= 0.3 s on a quiet machine; the load average is printed with it.
The median of the repeats counts (the machine is shared).

`import_ms` breaks down what the measured run imports (`python -X importtime`, the smallest of
the repeats per module, summed by top-level package over each module's own time). A probe run
(the graph plus one step that runs with its first nodes) gives `cpu_to_first_node_s`, the CPU
seconds the process used up to then (`time.process_time()`, far steadier than wall time when
others load the machine), and `imported_by_first_node`, the heavy packages loaded by then.

Bytecode: an installed package has its `.pyc` files (pip compiles them), so the children run
without `PYTHONDONTWRITEBYTECODE` and a warm-up run writes the checkout's `__pycache__`; with
that variable set (as on some CI machines) every start would compile the package's sources
again, ~0.1 s of CPU that no installed copy pays.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Everything the CLI can import (every command registered); older checkouts register them all
# on `import dagagents.cli.commands`.
_IMPORT_CLI = "import dagagents.cli.commands as c\nif hasattr(c, 'load_all'):\n    c.load_all()"


# Packages a simulated run must not wait for (each costs tens of ms to a second to import).
HEAVY = (
    "anthropic",
    "httpx",
    "matplotlib",
    "numpy",
    "graphviz",
    "rich",
    "starlette",
    "uvicorn",
    "redis",
    "opentelemetry",
    "dask",
    "distributed",
    "tenacity",
    "fsspec",
)

# GRAPH plus a step that writes down the CPU used and what is imported when it runs.
_PROBE = """
import os, sys, time
import dagagents.model.graph as _graph_module

graph = _graph_module.Graph.load({graph!r})


@graph.step
def _startup_probe() -> str:
    with open(os.environ["DAGAGENTS_STARTUP_PROBE"], "w") as out:
        out.write("\\n".join([str(time.process_time()), *sorted(sys.modules)]))
    return "probed"
"""


def _env(repo: Path = REPO) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached (see above)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spawn_to_exit(args: list[str], repo: Path = REPO) -> tuple[float, float]:
    """(wall seconds from spawn to exit, the child's CPU seconds)."""
    c0, t0 = _children_cpu(), time.time()
    subprocess.run([sys.executable, *args], check=True, env=_env(repo), cwd=repo)
    return time.time() - t0, _children_cpu() - c0


def _run_cmd(graph: str, trace: Path, quiet: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "dagagents", "run", graph, "--provider", "simulated"]
    return cmd + ["--no-store", "--trace", str(trace)] + (["-q"] if quiet else [])


def first_node_start(graph: str, repo: Path = REPO, quiet: bool = True) -> tuple[float, float]:
    """(seconds from spawn to the first node_start, seconds from spawn to exit)."""
    with tempfile.TemporaryDirectory(prefix="dagagents-startup-") as tmp:
        trace = Path(tmp) / "trace.jsonl"
        cmd = _run_cmd(graph, trace, quiet)
        t0 = time.time()
        subprocess.run(cmd, check=True, env=_env(repo), cwd=repo, stdout=subprocess.DEVNULL)
        total = time.time() - t0
        for line in trace.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "node_start":
                return event["ts"] - t0, total
    raise RuntimeError("the run emitted no node_start")


def import_breakdown(graph: str, repeat: int, repo: Path = REPO) -> dict[str, float]:
    """Milliseconds of import time of the measured run by top-level package (each module's
    own time, the smallest over `repeat` runs of `python -X importtime`), largest first."""
    best: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="dagagents-startup-") as tmp:
        cmd = _run_cmd(graph, Path(tmp) / "trace.jsonl")
        cmd.insert(1, "-X")
        cmd.insert(2, "importtime")
        for _ in range(repeat):
            done = subprocess.run(
                cmd, check=True, env=_env(repo), cwd=repo, capture_output=True, text=True
            )
            for line in done.stderr.splitlines():
                if not line.startswith("import time:") or "self [us]" in line:
                    continue
                own, _cumulative, name = line[len("import time:") :].split("|")
                module = name.strip()
                best[module] = min(best.get(module, 1 << 62), int(own))
    groups: dict[str, float] = {}
    for module, us in best.items():
        root = module.split(".")[0]
        key = root if root in _GROUPS or root.startswith("dagagents") else "other (stdlib, ...)"
        key = "dagagents" if key.startswith("dagagents") else key
        groups[key] = groups.get(key, 0.0) + us / 1000
    ordered = sorted(groups.items(), key=lambda kv: -kv[1])
    return {"total": round(sum(groups.values()), 1), **{k: round(v, 1) for k, v in ordered}}


_GROUPS = {
    "networkx",
    "pydantic",
    "pydantic_core",
    "typer",
    "click",
    "rich",
    "asyncio",
    "orjson",
    "annotated_types",
    "typing_extensions",
    "ssl",
    "importlib",
    "email",
    "numpy",
    *HEAVY,
}


def first_node_probe(graph: str, repo: Path = REPO) -> tuple[float, dict[str, Any]]:
    """When a probe step added to GRAPH runs (with its first nodes): the CPU seconds the
    process has used so far (steadier than wall time on a shared machine), and the heavy
    packages loaded by then, with how many modules in all."""
    with tempfile.TemporaryDirectory(prefix="dagagents-startup-") as tmp:
        probe_graph = Path(tmp) / "startup_probe.py"
        probe_graph.write_text(_PROBE.format(graph=str(repo / graph)))
        out = Path(tmp) / "modules.txt"
        env = {**_env(repo), "DAGAGENTS_STARTUP_PROBE": str(out)}
        cmd = _run_cmd(str(probe_graph), Path(tmp) / "trace.jsonl")
        subprocess.run(cmd, check=True, env=env, cwd=repo, stdout=subprocess.DEVNULL)
        cpu, *modules = out.read_text().split()
    roots = {m.split(".")[0] for m in modules}
    return float(cpu), {"modules": len(modules), "heavy": sorted(roots.intersection(HEAVY))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--graph", default="graphs/fanout.py")
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="another checkout (e.g. `git archive` of an older commit) measured alternately",
    )
    args = parser.parse_args(argv)
    load0 = os.getloadavg()[0]
    bare, imp, first, total, loud = [], [], [], [], []
    bare_cpu, cli_cpu = [], []
    other_first: list[float] = []
    other_cpu: list[float] = []
    probe_cpu: list[float] = []
    other_probe_cpu: list[float] = []
    first_node_start(args.graph)  # warm the OS file cache and write the bytecode cache
    if args.against is not None:
        first_node_start(args.graph, args.against)
    for _ in range(args.repeat):
        wall, cpu = spawn_to_exit(["-c", "pass"])
        bare.append(wall)
        bare_cpu.append(cpu)
        imp.append(spawn_to_exit(["-c", "import dagagents"])[0])
        cli_cpu.append(spawn_to_exit(["-c", _IMPORT_CLI])[1])
        f, t = first_node_start(args.graph)
        first.append(f)
        total.append(t)
        loud.append(first_node_start(args.graph, quiet=False)[0])
        cpu_used, imported = first_node_probe(args.graph)
        probe_cpu.append(cpu_used)
        if args.against is not None:
            other_first.append(first_node_start(args.graph, args.against)[0])
            other_probe_cpu.append(first_node_probe(args.graph, args.against)[0])
            other_cpu.append(spawn_to_exit(["-c", _IMPORT_CLI], args.against)[1])
    med = statistics.median
    out = {
        "benchmark": "startup",
        "graph": args.graph,
        "repeat": args.repeat,
        "python_pass_s": round(med(bare), 3),
        "import_dagagents_s": round(med(imp), 3),
        "first_node_start_s": round(med(first), 3),
        "first_node_start_all_s": [round(x, 3) for x in first],
        "first_node_start_not_quiet_s": round(med(loud), 3),
        "process_total_s": round(med(total), 3),
        # CPU seconds (steadier than wall on a shared machine): what the CLI's imports cost
        "python_pass_cpu_s": round(med(bare_cpu), 3),
        "import_cli_cpu_s": round(med(cli_cpu), 3),
        "first_node_start_over_bare_python": round(med(first) / med(bare), 2),
        "import_ms": import_breakdown(args.graph, min(args.repeat, 5)),
        "cpu_to_first_node_s": round(med(probe_cpu), 3),
        "imported_by_first_node": imported,
        "target_s": 0.3,
        "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    if other_first:
        out["against"] = str(args.against)
        out["against_first_node_start_s"] = round(med(other_first), 3)
        out["against_import_cli_cpu_s"] = round(med(other_cpu), 3)
        out["against_cpu_to_first_node_s"] = round(med(other_probe_cpu), 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
