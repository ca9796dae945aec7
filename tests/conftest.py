"""Shared fixtures: every test runs in its own temp directory (stores land there)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Subprocesses (CLI runs, killed workers, fake servers) import the checkout under test, whichever
# venv or worktree runs the tests.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)


def _compile_checkout() -> None:
    """Write the checkout's bytecode once, so the suite's hundreds of subprocesses read it
    instead of each compiling the package's sources again (~0.1 s of CPU per CLI run). Only
    needed under PYTHONDONTWRITEBYTECODE, where no import writes it; stale files are harmless
    (Python checks each against its source's size and mtime)."""
    if sys.dont_write_bytecode:
        import compileall

        for folder in ("dagagents", "graphs"):
            compileall.compile_dir(ROOT / folder, quiet=2)


_compile_checkout()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default stores (./.dagagents) go to the test's temp dir; no real key leaks in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for CLI subprocesses: offline, no key, the repo's venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def dagagents_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dagagents", *args]
