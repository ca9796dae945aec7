"""Issue 15: time from process start to the first `node_start` of `dagagents run` (simulated).

    python -m benchmarks.startup [--repeat 7] [--graph graphs/fanout.py]

Each repeat starts a fresh `python -m dagagents run GRAPH --provider simulated --no-store -q
--trace FILE` and reads the first `node_start` event's wall-clock stamp from the trace: the
figure is that stamp minus the moment just before the process was spawned. Beside it, in the
same run, yardsticks: a bare interpreter (`python -c pass`, spawn to exit), `python -c
"import dagagents"`, and the CPU seconds of importing everything the CLI imports (steadier
than wall time on a shared machine). Target: <= 0.3 s on a quiet machine; the load average is printed with it.
The median of the repeats counts (the machine is shared).
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

REPO = Path(__file__).resolve().parent.parent


def _env(repo: Path = REPO) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("ANTHROPIC_API_KEY", None)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spawn_to_exit(args: list[str], repo: Path = REPO) -> tuple[float, float]:
    """(wall seconds from spawn to exit, the child's CPU seconds)."""
    c0, t0 = _children_cpu(), time.time()
    subprocess.run([sys.executable, *args], check=True, env=_env(repo), cwd=repo)
    return time.time() - t0, _children_cpu() - c0


def first_node_start(graph: str, repo: Path = REPO) -> tuple[float, float]:
    """(seconds from spawn to the first node_start, seconds from spawn to exit)."""
    with tempfile.TemporaryDirectory(prefix="dagagents-startup-") as tmp:
        trace = Path(tmp) / "trace.jsonl"
        cmd = [sys.executable, "-m", "dagagents", "run", graph, "--provider", "simulated"]
        cmd += ["--no-store", "-q", "--trace", str(trace)]
        t0 = time.time()
        subprocess.run(cmd, check=True, env=_env(repo), cwd=repo, stdout=subprocess.DEVNULL)
        total = time.time() - t0
        for line in trace.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "node_start":
                return event["ts"] - t0, total
    raise RuntimeError("the run emitted no node_start")


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
    bare, imp, first, total = [], [], [], []
    bare_cpu, cli_cpu = [], []
    other_first: list[float] = []
    other_cpu: list[float] = []
    spawn_to_exit(["-c", "import dagagents"])  # warm the OS file cache
    for _ in range(args.repeat):
        wall, cpu = spawn_to_exit(["-c", "pass"])
        bare.append(wall)
        bare_cpu.append(cpu)
        imp.append(spawn_to_exit(["-c", "import dagagents"])[0])
        cli_cpu.append(spawn_to_exit(["-c", "import dagagents.cli.commands"])[1])
        f, t = first_node_start(args.graph)
        first.append(f)
        total.append(t)
        if args.against is not None:
            other_first.append(first_node_start(args.graph, args.against)[0])
            other_cpu.append(
                spawn_to_exit(["-c", "import dagagents.cli.commands"], args.against)[1]
            )
    med = statistics.median
    out = {
        "benchmark": "startup",
        "graph": args.graph,
        "repeat": args.repeat,
        "python_pass_s": round(med(bare), 3),
        "import_dagagents_s": round(med(imp), 3),
        "first_node_start_s": round(med(first), 3),
        "first_node_start_all_s": [round(x, 3) for x in first],
        "process_total_s": round(med(total), 3),
        # CPU seconds (steadier than wall on a shared machine): what the CLI's imports cost
        "python_pass_cpu_s": round(med(bare_cpu), 3),
        "import_cli_cpu_s": round(med(cli_cpu), 3),
        "first_node_start_over_bare_python": round(med(first) / med(bare), 2),
        "target_s": 0.3,
        "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    if other_first:
        out["against"] = str(args.against)
        out["against_first_node_start_s"] = round(med(other_first), 3)
        out["against_import_cli_cpu_s"] = round(med(other_cpu), 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
