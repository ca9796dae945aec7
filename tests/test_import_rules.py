"""The rooms' import rules (docs/ARCHITECTURE.md): a room that imports one it may not fails here.

Every import counts, including those inside functions: a lazy import is still a dependency.
Imports under `if TYPE_CHECKING:` are skipped: they name a type for the checker and never run.
The top-level `dagagents` package is the public facade and may be imported from anywhere.
"""

from __future__ import annotations

import ast
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


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the statements inside `if TYPE_CHECKING:` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _names_type_checking(node.test):
            for stmt in node.body:
                skipped.update(id(n) for n in ast.walk(stmt))
    return skipped


def _names_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_only(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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


def test_no_room_imports_one_it_may_not() -> None:
    assert violations(FORBIDDEN) == []


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


def test_a_type_checking_only_import_is_not_a_dependency(tmp_path: Path) -> None:
    package = tmp_path / "dagagents"
    (package / "model").mkdir(parents=True)
    (package / "model" / "ok.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from dagagents.observe.runs import RunResult\n"
    )
    assert violations(FORBIDDEN, package) == []
