"""Testing aids: a fake Anthropic Messages API served on loopback, for the real SDK to talk to.

`pytest_plugins = ["dagagents.testing"]` gives the `fake_anthropic` fixture;
`python -m dagagents.testing --port 8765` serves it from the command line.
May import: `dagagents.errors` and `dagagents.providers` (never the engine, store or model).
"""

import contextlib

from dagagents.testing.batches import BatchQueue, FakeBatch
from dagagents.testing.prompt_cache import PromptCache
from dagagents.testing.server import (
    FakeAnthropic,
    Fault,
    RecordedRequest,
    Reply,
    Rule,
    assert_no_secret,
    example_for_schema,
    find_secret,
    json_reply,
    last_user_text,
    main,
    text,
    tool_call,
    tool_results,
)

with contextlib.suppress(ImportError):  # the fixture exists only where pytest is installed
    from dagagents.testing.server import fake_anthropic_fixture

__all__ = [
    "BatchQueue",
    "FakeBatch",
    "PromptCache",
    "FakeAnthropic",
    "Fault",
    "RecordedRequest",
    "Reply",
    "Rule",
    "assert_no_secret",
    "example_for_schema",
    "fake_anthropic_fixture",
    "find_secret",
    "json_reply",
    "last_user_text",
    "main",
    "text",
    "tool_call",
    "tool_results",
]
