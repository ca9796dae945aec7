"""The closing lines of a benchmark with named checks: each check's figure, the verdict, the
JSON record (`--json`), and the exit code (0: every target holds)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def conclude(
    rows: Sequence[Mapping[str, Any]],
    checks: Mapping[str, float | bool],
    ok: bool,
    json_path: Path | None,
    *,
    scope: str = "",
) -> int:
    """Print the checks and whether the targets (of `scope`, if named) hold; write the JSON."""
    print()
    for label, value in checks.items():
        shown = str(value) if isinstance(value, bool) else f"{value:7.3f}"
        print(f"{label:58} {shown}")
    print(f"targets{f' ({scope})' if scope else ''}:", "all hold" if ok else "MISSED")
    if json_path is not None:
        record = {"rows": list(rows), "checks": dict(checks), "ok": ok}
        json_path.write_text(json.dumps(record, indent=2))
    return 0 if ok else 1
