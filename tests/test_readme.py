"""Every Python block and every `dagagents` command in README.md runs, offline, as pasted.

Snippets run in README order in one temp directory holding a copy of `graphs/` (so a command
that reads the store an earlier one wrote works, as it does for a reader following along).
Python blocks run each in a fresh interpreter: a block must be complete on its own. In bash
blocks, every line starting with `dagagents ` runs (comments stripped, `\\` continuations
joined); other lines (`make`, `pip`, `dask`) are for the reader. A block that truly cannot run
here (it needs a cluster, or serves until Ctrl-C) is preceded by
`<!-- readme-test: skip (why) -->`; use it sparingly. A block that needs the Anthropic API
itself (batch mode) is preceded by `<!-- readme-test: fake-api (why) -->`: it runs with a key
against `dagagents.testing`'s fake Messages API on 127.0.0.1, never the network.

The simulated provider runs at 1/20 of its latencies (`DAGAGENTS_SIM_TIME_SCALE=0.05`): the
same commands, outputs and schedules, in a minute instead of four.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

from dagagents.testing import FakeAnthropic

README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b.*?-->")
FAKE_API = re.compile(r"<!--\s*readme-test:\s*fake-api\b.*?-->")
KEY = "sk-ant-readme-test-0000000000"
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
SHELLS = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Snippet:
    kind: str  # "python" | "command"
    text: str
    line: int  # 1-based line in README.md
    fake_api: bool = False

    @property
    def id(self) -> str:
        what = (
            " ".join(shlex.split(self.text, comments=True)) if self.kind == "command" else "python"
        )
        return f"README.md:{self.line} {what[:70]}"


def readme_snippets(text: str) -> Iterator[Snippet]:
    """Python blocks and `dagagents` command lines, in order; skip-marked blocks left out."""
    lines = text.splitlines()
    skip_next = fake_next = False
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if not fence:
            if SKIP.search(line):
                skip_next = True
            elif FAKE_API.search(line):
                fake_next = True
            elif line.strip():
                skip_next = fake_next = False  # a marker applies to the block right after it
            i += 1
            continue
        lang = fence.group(1).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"README.md:{i + 1}: code block never closed"
        body = lines[i + 1 : end]
        if not skip_next:
            if lang == "python":
                yield Snippet("python", "\n".join(body) + "\n", i + 2, fake_next)
            elif lang in SHELLS:
                for command in _commands(body, i + 2):
                    yield Snippet(command.kind, command.text, command.line, fake_next)
        skip_next = fake_next = False
        i = end + 1


def _commands(body: list[str], first_line: int) -> Iterator[Snippet]:
    joined = ""
    start = first_line
    for offset, raw in enumerate(body):
        if not joined:
            start = first_line + offset
        joined += raw.rstrip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        command, joined = joined.strip(), ""
        if command.startswith("dagagents "):
            yield Snippet("command", command, start)


SNIPPETS = list(readme_snippets(README.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the whole README, as a reader's checkout would be."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "graphs", root / "graphs", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_readme_has_snippets_and_they_are_found() -> None:
    kinds = {s.kind for s in SNIPPETS}
    assert kinds == {"python", "command"}
    assert any(s.text.startswith("dagagents run ") for s in SNIPPETS)


def test_readme_calls_the_pattern_graphs_four() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| graph | pattern | use it when |") :].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines()[2:] if line.startswith("| `graphs/")]
    assert len(rows) == 4
    assert "three patterns" not in text


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeAnthropic]:
    """The fake Messages API on 127.0.0.1, for blocks marked fake-api."""
    api = FakeAnthropic(api_key=KEY).start()
    yield api
    api.stop()


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_readme_snippet_runs(
    snippet: Snippet, workdir: Path, request: pytest.FixtureRequest
) -> None:
    env = cli_env(COLUMNS="160", DAGAGENTS_SIM_TIME_SCALE="0.05")
    if snippet.fake_api:
        api: FakeAnthropic = request.getfixturevalue("fake_api")
        env.update(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=api.url)
    if snippet.kind == "python":
        path = workdir / f"readme_line_{snippet.line}.py"
        path.write_text(snippet.text, encoding="utf-8")
        argv = [sys.executable, str(path)]
    else:
        args = shlex.split(snippet.text, comments=True)
        argv = [sys.executable, "-m", "dagagents", *args[1:]]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=workdir, timeout=600)
    assert proc.returncode == 0, (
        f"{snippet.id} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
