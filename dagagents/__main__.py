"""`python -m dagagents` is the CLI."""

import gc

# Collections pause from the first import on; the CLI resumes them once start-up is over
# (see `_StartUp` in cli/app.py).
_collecting = gc.isenabled()
gc.disable()

from dagagents.cli import main  # noqa: E402

main(resume_collector=_collecting)
