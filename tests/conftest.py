"""Shared fixtures: every test runs in its own temp directory (stores land there)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
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

# A shell starts background jobs (`make test &`, nohup) with Ctrl-C ignored, and a child
# inherits that: the tests that press Ctrl-C on a CLI run would then see it ignored. Children
# of a process that handles SIGINT start with the default, as under a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


def run_dagagents(
    cwd: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`dagagents ARGS` in `cwd` with `cli_env(**env)`, its output captured as text."""
    return subprocess.run(
        dagagents_cmd(*args),
        capture_output=True,
        text=True,
        env=cli_env(**env),
        cwd=cwd,
        timeout=timeout,
    )


# ------------------------------------------------ a real small disk (store tests)
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 200 KiB tmpfs (root only), unmounted afterwards; change it with `remount`."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def remount() -> Callable[[Path, str], None]:
    """`remount(small_disk, "ro")` or `remount(small_disk, "size=4m")`: change a mounted disk."""

    def run(mnt: Path, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], check=True)

    return run
