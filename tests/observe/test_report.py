"""`dagagents report`: one offline HTML file, checked in headless Chromium like a person would."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_dagagents
from eventful import eventful_run
from matplotlib import image as mpimg

from dagagents import Graph, SimulatedProvider
from dagagents.observe.timeline import timeline_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (`make test` installs Debian's chromium)"
)
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report")
    eventful_run(base / "store")
    out = run_dagagents(
        Path.cwd(),
        "report",
        "latest",
        "--store",
        str(base / "store"),
        "-o",
        str(base / "r" / "run.html"),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return base / "r" / "run.html"


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=120,
    )


@needs_dot
def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # Nothing is fetched: no scripts, stylesheets or images from anywhere else.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    assert "<svg" in page and "data:image/png;base64," in page
    png = re.search(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert png and base64.b64decode(png.group(1))[:4] == b"\x89PNG"
    for part in ("Cost and latency per agent", "Critical path", "row 3 has no date", "overloaded"):
        assert part in page


@needs_dot
@needs_chromium
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    assert "<svg" in html and 'class="timeline"' in html and "<table" in html
    for heading in ("Graph", "Timeline", "Cost and latency per agent", "Every node"):
        assert f">{heading}</h2>" in html
    for node in ("background", "fetch", "research", "parse", "chart", "memo"):
        assert node in html

    shot = tmp_path / "shot.png"
    done = chromium(
        f"--screenshot={shot}", "--window-size=1280,2200", report.as_uri(), profile=tmp_path / "p2"
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = mpimg.imread(shot)[..., :3]
    non_white = (pixels < 0.95).any(axis=-1).mean()
    assert non_white > 0.03, f"the screenshot is nearly blank ({non_white:.1%} ink)"
    assert pixels.std() > 0.05


def test_timeline_png_with_a_sequential_comparison(tmp_path: Path) -> None:
    g = Graph.load(str(Path(__file__).resolve().parents[2] / "graphs" / "fanout.py"))
    fast = g.run(provider=SimulatedProvider(time_scale=0.01), store=None, concurrency=6)
    slow = g.run(provider=SimulatedProvider(time_scale=0.01), store=None, concurrency=1)
    out = timeline_png(fast, tmp_path / "t.png", compare_with=slow)
    assert out.read_bytes()[:4] == b"\x89PNG"
    height, width = mpimg.imread(out).shape[:2]
    assert width > 800 and height > 400
