"""The performance targets (issues 2, 3 and 7), each one function over a list of measurements.

`compare`, `scheduler_overhead` and `checkpoint_overhead` pick the targets they report from
here, so a target is written (and can only be weakened) in one place. A target is `holds=None`
when some run it needs failed or was not made: never counted as met.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from benchmarks import dags
from benchmarks.runner import Measurement

CONCURRENCIES = (4, 64)
ZERO_WORK_CONCURRENCY = 64


@dataclass
class Target:
    """One target and where it stands."""

    name: str
    holds: bool | None  # None: could not be evaluated (a run failed or is missing)
    detail: str

    def line(self) -> str:
        verdict = {True: "HOLDS", False: "MISS ", None: "N/A  "}[self.holds]
        return f"[{verdict}] {self.name}: {self.detail}"


def find(results: Iterable[Measurement], engine: str, dag: str, c: int) -> Measurement | None:
    """The measurement of `engine` on `dag` at concurrency `c`, if one was made."""
    for m in results:
        if (m.engine, m.dag, m.concurrency) == (engine, dag, c):
            return m
    return None


def check(
    name: str,
    rows: Sequence[tuple[str, Measurement | None]],
    ok: Callable[[Measurement], bool],
    show: Callable[[Measurement], str],
) -> Target:
    """Holds if `ok` holds for every row; a failed or missing row makes it N/A."""
    parts: list[str] = []
    verdicts: list[bool | None] = []
    for label, m in rows:
        if m is None or not m.ok:
            parts.append(f"{label}: n/a ({m.error if m else 'not run'})")
            verdicts.append(None)
            continue
        verdicts.append(ok(m))
        parts.append(f"{label}: {show(m)}{'' if verdicts[-1] else ' MISS'}")
    holds = None if None in verdicts else all(verdicts)
    return Target(name, holds, "; ".join(parts))


def makespan(
    results: list[Measurement],
    engine: str,
    vs: str = "ideal",
    limit: float = 1.05,
    dag_names: Sequence[str] = dags.TIMED,
    concurrencies: Sequence[int] = CONCURRENCIES,
) -> Target:
    """wall <= limit x the ideal schedule (or x the lower bound, `vs="lower_bound"`)."""

    def ratio(m: Measurement) -> float:
        value = m.vs_ideal if vs == "ideal" else m.vs_lower_bound
        return float("inf") if value is None else value

    rows = [(f"{d} c={c}", find(results, engine, d, c)) for d in dag_names for c in concurrencies]
    where = ", ".join(dag_names) + "; c=" + ", ".join(map(str, concurrencies))
    label = "ideal" if vs == "ideal" else "lower bound"
    return check(
        f"{engine}: makespan <= {limit:g} x {label} ({where})",
        rows,
        lambda m: ratio(m) <= limit,
        lambda m: f"{ratio(m):.3f}x",
    )


def faster_than(
    results: list[Measurement], engine: str, rival: str, factor: float, dag: str = "heterogeneous"
) -> Target:
    """`engine` at least `factor` x faster than `rival` on `dag` at every concurrency."""

    def speedup(m: Measurement) -> float:
        r = find(results, rival, dag, m.concurrency)
        return r.wall / m.wall if r and r.ok and r.wall and m.wall else 0.0

    rows = [(f"c={c}", find(results, engine, dag, c)) for c in CONCURRENCIES]
    return check(
        f"{engine}: {dag} >= {factor:g} x faster than {rival}",
        rows,
        lambda m: speedup(m) >= factor,
        lambda m: f"{speedup(m):.2f}x" if speedup(m) else f"{rival} n/a",
    )


def per_node(results: list[Measurement], engine: str, limit_us: float) -> Target:
    """Per-node overhead (wall / nodes) on the zero-work DAGs within `limit_us`."""
    rows = [(d, find(results, engine, d, ZERO_WORK_CONCURRENCY)) for d in dags.ZERO_WORK]
    return check(
        f"{engine}: per-node overhead <= {limit_us:g} us ({', '.join(dags.ZERO_WORK)})",
        rows,
        lambda m: (m.per_node_us or float("inf")) <= limit_us,
        lambda m: f"{m.per_node_us:.1f} us",
    )


def lower_overhead_than(
    results: list[Measurement], engine: str, rival: str, note: str = ""
) -> Target:
    """Per-node overhead of `engine` below `rival`'s on every zero-work DAG."""

    def theirs(m: Measurement) -> float | None:
        r = find(results, rival, m.dag, m.concurrency)
        return r.per_node_us if r and r.ok else None

    rows = [(d, find(results, engine, d, ZERO_WORK_CONCURRENCY)) for d in dags.ZERO_WORK]
    return check(
        f"{engine}: per-node overhead lower than {rival}{note}",
        rows,
        lambda m: (t := theirs(m)) is not None and (m.per_node_us or 0) < t,
        lambda m: (
            f"{m.per_node_us:.1f} vs " + (f"{t:.1f} us" if (t := theirs(m)) is not None else "n/a")
        ),
    )


def peak_rss(results: list[Measurement], engine: str, limit_mb: float = 200.0) -> Target:
    """Peak RSS of the whole process running a zero-work (10,000-node) DAG."""
    rows = [(d, find(results, engine, d, ZERO_WORK_CONCURRENCY)) for d in dags.ZERO_WORK]
    return check(
        f"{engine}: peak RSS of a 10,000-node run <= {limit_mb:g} MB",
        rows,
        lambda m: (m.rss_peak_mb or float("inf")) <= limit_mb,
        lambda m: f"{m.rss_peak_mb:.0f} MB",
    )


def cached_resume(results: list[Measurement], limit_s: float = 1.0) -> Target:
    """Wall time of rerunning a fully checkpointed zero-work DAG."""
    rows = [
        (d, find(results, "dagagents-resume", d, ZERO_WORK_CONCURRENCY)) for d in dags.ZERO_WORK
    ]
    return check(
        f"dagagents: fully cached resume of 10,000 nodes <= {limit_s:g} s",
        rows,
        lambda m: (m.wall or float("inf")) <= limit_s,
        lambda m: f"{m.wall:.3f} s",
    )
