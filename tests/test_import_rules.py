"""The rooms' import rules (docs/ARCHITECTURE.md): a room that imports one it may not fails here.

Every import counts, including those inside functions: a lazy import is still a dependency.
The top-level `dagagents` package is the public facade and may be imported from anywhere.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dagagents"

# room -> rooms it must not import
FORBIDDEN: dict[str, set[str]] = {
    "model": {"engine", "observe", "cli", "testing"},
    "providers": {"store", "engine", "model", "observe", "cli", "testing"},
    "store": {"providers", "engine", "model", "observe", "cli", "testing"},
    "engine": {"cli", "testing"},
    "observe": {"cli", "testing"},
    "testing": {"engine", "store", "model", "observe", "cli"},
}


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dagagents" or len(parts) < 2:
        return None
    return parts[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from dagagents import store` names a room too
            if node.module == "dagagents":
                found.extend((node.lineno, f"dagagents.{alias.name}") for alias in node.names)
    return found


def violations(forbidden: dict[str, set[str]], package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        room = room_of(module)
        for lineno, target in imports_of(path):
            target_room = room_of(target)
            if target_room is None or target_room == room:
                continue
            where = f"{path.relative_to(package.parent)}:{lineno}"
            if target_room == "cli" and module != "dagagents.__main__":
                problems.append(f"{where} imports {target}: only cli and __main__ import cli")
            elif room is not None and target_room in forbidden.get(room, set()):
                problems.append(f"{where}: room '{room}' may not import '{target_room}' ({target})")
    return problems


# A ratchet while the model is being separated from the engine (issue 11): this list may only
# shrink, and must be empty when that work lands.
KNOWN_VIOLATIONS = {
    "dagagents/model/graph.py: room 'model' may not import 'observe' (dagagents.observe.runs)",
    "dagagents/model/graph.py: room 'model' may not import 'engine' (dagagents.engine.run)",
    "dagagents/model/nodes.py: room 'model' may not import 'engine' (dagagents.engine.invoke)",
    "dagagents/model/orchestrator.py: room 'model' may not import 'engine' (dagagents.engine.invoke)",
}


def test_no_room_imports_one_it_may_not() -> None:
    found = {re.sub(r":\d+:", ":", v) for v in violations(FORBIDDEN)}  # lines move; files don't
    assert found <= KNOWN_VIOLATIONS


def test_every_room_says_what_it_is_for_and_what_it_may_import() -> None:
    for room in ("model", "engine", "store", "providers", "observe", "testing", "cli"):
        init = PACKAGE / room / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc, f"{init} does not say what it may import"


@pytest.mark.parametrize(
    ("room", "target"),
    [("model", "engine"), ("providers", "store"), ("store", "providers"), ("engine", "cli")],
)
def test_the_rule_check_catches_a_forbidden_import(tmp_path: Path, room: str, target: str) -> None:
    package = tmp_path / "dagagents"
    (package / room).mkdir(parents=True)
    (package / room / "bad.py").write_text(f"def f():\n    from dagagents.{target}.x import y\n")
    assert violations(FORBIDDEN, package)
