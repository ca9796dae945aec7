"""Measure engine runs, each batch in a fresh Python process so peak RSS belongs to one engine.

The parent calls `measure_in_subprocess(engine, jobs)`; the child (`python -m
benchmarks.runner JSON`) imports only that engine, runs the jobs, validates each execution log
with `dags.check_log` and prints one JSON result per job. A run whose log fails the check is
reported with `ok: false` and its time must not be used.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks import dags
from benchmarks.engines import ENGINES, IMPORTS, WARMUP_ENGINE

RESULT_PREFIX = "BENCH-RESULT "


@dataclass
class Job:
    """One engine run: a suite DAG at a concurrency (`store` links ckpt and resume runs)."""

    dag: str
    concurrency: int
    quick: bool = False
    store: str | None = None


@dataclass
class Measurement:
    """One job's outcome; times in seconds, memory in MB (peak is the child process's)."""

    engine: str
    dag: str
    concurrency: int
    nodes: int
    ok: bool
    error: str | None = None
    wall: float | None = None
    cpu: float | None = None
    build: float | None = None
    ideal: float | None = None
    lower_bound: float | None = None
    rss_base_mb: float | None = None
    rss_peak_mb: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def per_node_us(self) -> float | None:
        return None if self.wall is None or not self.nodes else self.wall / self.nodes * 1e6

    @property
    def cpu_per_node_us(self) -> float | None:
        return None if self.cpu is None or not self.nodes else self.cpu / self.nodes * 1e6

    @property
    def vs_ideal(self) -> float | None:
        return _ratio(self.wall, self.ideal)

    @property
    def vs_lower_bound(self) -> float | None:
        return _ratio(self.wall, self.lower_bound)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            per_node_us=self.per_node_us,
            cpu_per_node_us=self.cpu_per_node_us,
            vs_ideal=self.vs_ideal,
            vs_lower_bound=self.vs_lower_bound,
        )
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def peak_rss_mb() -> float:
    """This process's high-water resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fs_object_cost_us(directory: str, n: int = 1000) -> float:
    """Microseconds the filesystem alone charges per checkpoint-like object in `directory`:
    a temp file created and renamed into one of 256 prefix directories, as the store lays
    objects out (on ext4 this is mostly kernel time and varies with other I/O)."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="fs-probe-") as tmp:
        started = time.perf_counter()
        for i in range(n):
            key = hashlib.sha256(b"%d" % i).hexdigest()
            shard = os.path.join(tmp, key[:2])
            os.makedirs(shard, exist_ok=True)
            path = os.path.join(shard, f".tmp-{key[2:10]}")
            with open(path, "wb") as fh:
                fh.write(b"x" * 300)
            os.replace(path, os.path.join(shard, key[2:]))
        return (time.perf_counter() - started) / n * 1e6


def warm_up(engine: str) -> None:
    """Import the engine and run it once on a tiny DAG (lazy imports, pools, first-call
    caches), as a long-lived user process would have; its time never counts."""
    for module in IMPORTS[engine]:
        importlib.import_module(module)
    tiny = dags.warmup()
    warm = WARMUP_ENGINE[engine]
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as tmp:
        run = ENGINES[warm](tiny, 2, store=tmp if warm == "dagagents-ckpt" else None)
    dags.check_log(tiny, run.log, 2)


def measure(engine: str, job: Job) -> Measurement:
    """Run one job in this process and validate its log (call in a fresh process for RSS)."""
    warm_up(engine)
    dag = dags.build(job.dag, quick=job.quick)
    dur = dags.durations(dag)
    m = Measurement(
        engine=engine,
        dag=job.dag,
        concurrency=job.concurrency,
        nodes=dag.number_of_nodes(),
        ok=False,
        ideal=dags.ideal_makespan(dag, dur, job.concurrency),
        lower_bound=dags.lower_bound(dag, dur, job.concurrency),
        rss_base_mb=peak_rss_mb(),
    )
    probe = engine == "dagagents-ckpt" and job.store and dags.zero_work_size(job.dag) is not None
    probe_dir = os.path.dirname(job.store or "") or "."
    # The disk probe runs right before and right after the run (this shared disk's file-create
    # cost moves by 10x within minutes): the yardstick is their mean, each beside the run.
    probe_n = 50 if job.quick else 1000
    before = fs_object_cost_us(probe_dir, probe_n) if probe else None
    try:
        run = ENGINES[engine](dag, job.concurrency, store=job.store)
        m.wall, m.cpu, m.build, m.info = run.wall, run.cpu, run.build, run.info
        m.rss_peak_mb = peak_rss_mb()
        m.info["load_avg_1m"] = os.getloadavg()[0]
        if before is not None:
            after = fs_object_cost_us(probe_dir, probe_n)
            m.info["fs_object_us"] = (before + after) / 2
            m.info["fs_object_us_before_after"] = [before, after]
        if run.log:  # wall = startup + first start..last end + teardown
            m.info["startup"] = min(start for _, start, _ in run.log) - run.started
            m.info["teardown"] = run.started + run.wall - max(end for _, _, end in run.log)
        if engine == "dagagents-resume":
            if run.log:
                raise dags.ScheduleError(f"{len(run.log)} node(s) ran again on a cached resume")
        else:
            dags.check_log(dag, run.log, job.concurrency)
            if m.ideal:  # the ideal again, with the durations the nodes really took
                took = {name: end - start for name, start, end in run.log}
                m.info["ideal_measured_durations"] = dags.ideal_makespan(dag, took, job.concurrency)
        m.ok = True
    except Exception as exc:
        m.error = f"{type(exc).__name__}: {exc}"
        m.info["traceback"] = traceback.format_exc(limit=-4)
    return m


def measure_in_subprocess(
    engine: str, jobs: list[Job], timeout: float = 240.0, repo: str | None = None
) -> list[Measurement]:
    """Run `jobs` on `engine` in one fresh child process; failures become `ok: false` rows.
    `repo`: another checkout to measure (its dagagents and its benchmarks), else this one."""
    payload = json.dumps({"engine": engine, "jobs": [asdict(j) for j in jobs]})
    repo = repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.runner", payload],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=repo,  # `-m` puts the working directory first on sys.path
        )
        error = (
            None
            if proc.returncode == 0
            else f"child exited {proc.returncode}: {proc.stderr[-800:]}"
        )
        stdout = proc.stdout
    except subprocess.TimeoutExpired as exc:
        error = f"timed out after {timeout:.0f}s"
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    results = [
        Measurement.from_json(json.loads(line[len(RESULT_PREFIX) :]))
        for line in stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    for job in jobs[len(results) :]:
        results.append(
            Measurement(engine, job.dag, job.concurrency, 0, ok=False, error=error or "no result")
        )
    return results


# Engines that need a checkpoint store; a resume reads the one its dagagents-ckpt run filled.
STORE_ENGINES = ("dagagents-ckpt", "dagagents-history", "dagagents-resume")
Batches = list[tuple[str, list[Job]]]


def store_for(root: str, engine: str, dag: str, concurrency: int) -> str | None:
    """The store directory a job uses under `root` (None: the engine keeps no checkpoints)."""
    if engine not in STORE_ENGINES:
        return None
    owner = "dagagents-ckpt" if engine == "dagagents-resume" else engine
    return os.path.join(root, f"{owner}-{dag}-c{concurrency}")


def run_plan(
    make_batches: Callable[[str], Batches], progress: Callable[[str], None] = print
) -> list[Measurement]:
    """Run `(engine, jobs)` batches, one fresh process each, in order, with their checkpoint
    stores under a temporary root that is removed afterwards."""
    root = tempfile.mkdtemp(prefix="dagagents-bench-")
    results: list[Measurement] = []
    try:
        for engine, jobs in make_batches(root):
            for m in measure_in_subprocess(engine, jobs):
                results.append(m)
                progress(summary_line(m))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def summary_line(m: Measurement) -> str:
    """One progress line per measurement."""
    head = f"{m.engine:<18} {m.dag:<14} c={m.concurrency:<3}"
    if not m.ok:
        return f"{head} FAILED: {m.error}"
    ratio = f" {m.vs_ideal:.3f}x ideal" if m.ideal else ""
    return (
        f"{head} wall {m.wall:8.3f} s{ratio}  {m.per_node_us:9.1f} us/node "
        f"(cpu {m.cpu_per_node_us:7.1f})  peak {m.rss_peak_mb:4.0f} MB"
    )


def main(argv: list[str]) -> int:
    """Child entry point: `python -m benchmarks.runner '{"engine": ..., "jobs": [...]}'`."""
    spec = json.loads(argv[0])
    for job in spec["jobs"]:
        m = measure(spec["engine"], Job(**job))
        print(RESULT_PREFIX + json.dumps(m.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
