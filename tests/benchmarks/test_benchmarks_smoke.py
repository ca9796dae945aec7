"""Smoke test of the benchmark suite (tiny sizes) so its code cannot rot.

No timing is asserted: only that every engine runs, every execution log passes the
correctness checker, and the reports are written. LangGraph and Dask come from the `bench`
extra; their checks are skipped when it is not installed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks import checkpoint_overhead, compare, dags, profile, scheduler_overhead
from benchmarks.runner import Measurement


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`python -m benchmarks.compare --quick` once for the whole module."""
    out = tmp_path_factory.mktemp("bench")
    assert compare.main(["--quick", "--out", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    report["markdown"] = (out / "compare.md").read_text()
    return report


def _rows(report: dict[str, Any], engine: str) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r["engine"] == engine]


def test_compare_quick_writes_reports_and_every_run_passes_the_checker(
    quick_report: dict[str, Any],
) -> None:
    results = quick_report["results"]
    failed = [
        (r["engine"], r["dag"], r["error"], r["info"].get("traceback"))
        for r in results
        if not r["ok"]
    ]
    assert results and not failed, failed
    for engine in ("dagagents", "dagagents-ckpt", "dagagents-history", "gather"):
        assert _rows(quick_report, engine), engine
    resumed = _rows(quick_report, "dagagents-resume")
    assert {r["dag"] for r in resumed} == set(dags.ZERO_WORK)
    assert quick_report["targets"] and "| target | holds | detail |" in quick_report["markdown"]
    assert quick_report["machine"]["cores"]


@pytest.mark.parametrize("engine", ["langgraph", "dask"])
def test_optional_rivals_run_every_dag(quick_report: dict[str, Any], engine: str) -> None:
    pytest.importorskip(engine)
    rows = _rows(quick_report, engine)
    assert {r["dag"] for r in rows} == set(dags.ALL)
    assert all(r["ok"] for r in rows)


def test_issue_scripts_plan_and_evaluate(quick_report: dict[str, Any]) -> None:
    """scheduler_overhead / checkpoint_overhead reuse the same runs and targets as compare."""
    results = [Measurement.from_json(r) for r in quick_report["results"]]
    assert {j.dag for _, [j] in scheduler_overhead.plan(quick=True)} == {
        "random100",
        *dags.ZERO_WORK,
    }
    engines = [engine for engine, _ in checkpoint_overhead.plan(True, "/nonexistent")]
    assert engines.index("dagagents-ckpt") < engines.index("dagagents-resume")
    for target in scheduler_overhead.evaluate(results) + checkpoint_overhead.evaluate(results):
        assert target.holds is not None, target.line()  # every run they need exists and passed
    assert len(checkpoint_overhead.checkpoint_share(results)) == len(dags.ZERO_WORK)


def test_ideal_schedule_and_lower_bound() -> None:
    het = dags.heterogeneous()
    dur = dags.durations(het)
    # Eager: the chain (10 x 0.1 s) runs beside the 1.0 s node, then the 0.1 s join.
    assert dags.ideal_makespan(het, dur, 4) == pytest.approx(1.1)
    assert dags.lower_bound(het, dur, 1) == pytest.approx(2.1)
    fan = dags.fanout()
    fdur = dags.durations(fan)
    assert dags.ideal_makespan(fan, fdur, 64) == pytest.approx(dags.critical_path(fan, fdur))
    assert dags.ideal_makespan(fan, fdur, 4) >= dags.lower_bound(fan, fdur, 4)
    assert dags.build("random100").number_of_nodes() == 100
    assert dags.build("chain10k", quick=True).number_of_edges() == dags.QUICK_ZERO_WORK_NODES - 1


def test_checker_rejects_bad_logs() -> None:
    dag = dags.warmup()  # a -> b, a -> c, b -> d, c -> d
    good = [("a", 0.0, 1.0), ("b", 1.0, 2.0), ("c", 1.0, 2.0), ("d", 2.0, 3.0)]
    dags.check_log(dag, good, concurrency=2)
    with pytest.raises(dags.ScheduleError, match="more than once"):
        dags.check_log(dag, [*good, ("a", 4.0, 5.0)])
    with pytest.raises(dags.ScheduleError, match="never ran"):
        dags.check_log(dag, good[:3])
    with pytest.raises(dags.ScheduleError, match="before its dependency"):
        dags.check_log(dag, [("a", 0.0, 1.0), ("b", 0.5, 2.0), *good[2:]])
    with pytest.raises(dags.ScheduleError, match="at once"):
        dags.check_log(dag, good, concurrency=1)


def test_profile_helper_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert profile.main(["chain10k", "--quick", "--mode", "resume", "--top", "3"]) == 0
    assert "dagagents" in capsys.readouterr().out


def test_the_bare_yardstick_loop_is_a_correct_eager_schedule() -> None:
    """benchmarks.scaling divides by the bare loop: it must run every node once, after its
    dependencies, within the concurrency limit, on wide, chain and random DAGs."""
    from benchmarks.engines import run_bare

    for dag in (dags.build("wide300"), dags.build("chain300"), dags.build("random100", True)):
        run = run_bare(dag, 4)
        dags.check_log(dag, run.log, 4)
        assert len(run.log) == dag.number_of_nodes()


def test_sized_zero_work_names() -> None:
    assert dags.zero_work_size("wide1k") == 1000
    assert dags.zero_work_size("chain100k") == 100_000
    assert dags.zero_work_size("wide300") == 300
    assert dags.zero_work_size("fanout") is None
    assert dags.build("chain1k", quick=True).number_of_nodes() == dags.QUICK_ZERO_WORK_NODES


def test_rate_limits_benchmark_runs_through_the_real_sdk(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """benchmarks.rate_limits at a tiny size: every node answered, the report printed."""
    from benchmarks import rate_limits

    assert rate_limits.main(["--nodes", "12", "--bound", "1", "--latency", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["demand"]["requests"] == 12
    assert out["binding"] in ("requests", "input_tokens", "output_tokens")


def test_repeated_resume_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import repeated_resume

    assert repeated_resume.main(["--quick", "--resumes", "3"]) == 0
    assert "last resume / first" in capsys.readouterr().out
