"""The live terminal view of a run and its final summary table (rich).

The view listens to trace events (cheap dictionary updates) and rich redraws it a few times a
second from its own thread, so a 10,000-node run is not slowed by drawing.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dagagents.observe.runs import RunResult

STYLE = {
    "done": "green",
    "cached": "cyan",
    "failed": "bold red",
    "skipped": "yellow",
    "cancelled": "magenta",
    "running": "bold blue",
    "pending": "dim",
    "waiting": "bold yellow",
}
MAX_ROWS = 24
# Reasons a node was stopped rather than broken: shown as "cancelled", as in the manifest.
CANCEL_WORDS = frozenset({"cancelled", "interrupted", "terminated"})
TAIL_CHARS = 400  # streamed text kept per running node
TAIL_SHOWN = 58  # of which the live view shows the end
# A Message Batch's processing_status, as the view words it.
BATCH_WORDS = {"in_progress": "processing", "canceling": "canceling", "ended": "ended"}


def _tokens(usage: dict[str, Any] | None) -> str:
    if not usage:
        return ""
    return f"{usage.get('input_tokens', 0):,} / {usage.get('output_tokens', 0):,}"


class LiveProgress:
    """Each node's state, elapsed time and tokens while the graph runs."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.state: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.elapsed: dict[str, float] = {}
        self.detail: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.text: dict[str, str] = {}  # the tail of each running node's streamed reply
        self.total = 0
        self.batches: dict[str, str] = {}  # batch id -> submitted | in_progress | ended
        self.in_batch: dict[str, str] = {}  # node -> the batch its request waits in
        self.t0 = time.perf_counter()
        self._live = Live(
            get_renderable=self.render, console=console, refresh_per_second=6, transient=False
        )

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        node = event.get("node")
        if kind == "token":
            name = str(node)
            self.text[name] = (self.text.get(name, "") + event["text"])[-TAIL_CHARS:]
            return
        if self._run_event(kind, event) or node is None:
            return
        self._node_event(kind, node, event)

    def _run_event(self, kind: str, event: dict[str, Any]) -> bool:
        """Apply an event about the whole run or its batches; False if it is not one."""
        if kind == "run_start":
            self.total = event["nodes"]
        elif kind == "expand":
            self.total += len(event["added"])
        elif kind == "batch_submitted":
            self.batches[event["batch_id"]] = "submitted"
            for name in event.get("nodes") or ():
                self.in_batch[name] = event["batch_id"]
        elif kind == "batch_reattached":  # a killed run's batch, collected by this one
            self.batches.setdefault(event["batch_id"], "submitted")
            if event.get("node"):
                self.in_batch[event["node"]] = event["batch_id"]
        elif kind == "batch_status" and event.get("batch_id") in self.batches:
            self.batches[event["batch_id"]] = str(event.get("status"))
        else:
            return False
        return True

    def _node_event(self, kind: str, node: str, event: dict[str, Any]) -> None:
        """Apply an event about one node."""
        if kind == "batch_wait":
            self.in_batch.pop(node, None)
            self.detail[node] = "waiting for the next batch"
        elif kind == "cache_warm" and event.get("released"):
            self.detail[node] = "on the critical path: wrote the prompt cache itself"
        elif kind == "cache_warm" and not event.get("gave_up"):
            for name in event.get("followers") or ():
                self.detail[name] = f"read the prompt cache {node} wrote"
        elif kind == "node_start":
            self.state[node] = "running"
            self.started[node] = time.perf_counter()
        elif kind == "cache_hit":
            self.state[node] = "cached"
        elif kind == "node_waiting":
            self.state[node] = "waiting"
            self.detail[node] = str(event.get("prompt") or "")
        elif kind == "node_complete":
            self.text.pop(node, None)
            self.state[node] = "done"
            self.elapsed[node] = event["duration"]
            self.tokens[node] = _tokens(event.get("usage"))
        elif kind == "node_error":
            self.state[node] = "cancelled" if event["error"] in CANCEL_WORDS else "failed"
            self.detail[node] = event["error"]
        elif kind == "node_skipped":
            self.state[node] = "skipped"
            self.detail[node] = f"because {event['because']}"
        elif kind == "retry":
            self.text.pop(node, None)  # the retried call streams its reply again
            self.detail[node] = f"retry {event.get('attempt')} in {event.get('wait', 0):.1f}s"

    def render(self) -> RenderableType:
        now = time.perf_counter()
        counts: dict[str, int] = {}
        for s in self.state.values():
            counts[s] = counts.get(s, 0) + 1
        pending = max(0, self.total - len(self.state))
        head = Text(f"{self.title}  ", style="bold")
        head.append(f"{now - self.t0:5.1f}s  ", style="dim")
        for s in ("running", "done", "cached", "failed", "cancelled", "skipped"):
            if counts.get(s):
                head.append(f"{s} {counts[s]}  ", style=STYLE[s])
        head.append(f"pending {pending}", style="dim")
        if self.batches:
            states = list(self.batches.values())
            ended = states.count("ended")
            head.append(
                f"  batches: {len(states)} submitted, {len(states) - ended} processing, "
                f"{ended} ended",
                style="magenta",
            )
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        table.add_column("node")
        table.add_column("state")
        table.add_column("elapsed", justify="right")
        table.add_column("tokens in / out", justify="right")
        table.add_column("", overflow="ellipsis", no_wrap=True, max_width=60)
        # Running first, then the most recent others, bounded for big graphs.
        order = sorted(self.state, key=lambda n: (self.state[n] != "running", n))
        for node in order[:MAX_ROWS]:
            s = self.state[node]
            note = self.detail.get(node, "")
            if s == "running":
                secs = now - self.started.get(node, now)
                batch = self.in_batch.get(node)
                if batch is not None:
                    state = self.batches.get(batch, "submitted")
                    note = f"in batch {batch[-8:]} · {BATCH_WORDS.get(state, state)}"
                tail = " ".join(self.text.get(node, "").split())
                if tail:
                    note = "…" + tail[-TAIL_SHOWN:]
            else:
                secs = self.elapsed.get(node, 0.0)
            table.add_row(
                Text(node),
                Text(s, style=STYLE.get(s, "")),
                f"{secs:.1f}s" if secs else "",
                self.tokens.get(node, ""),
                Text(note, style="italic" if s == "running" else ""),
            )
        if len(order) > MAX_ROWS:
            table.add_row(f"… {len(order) - MAX_ROWS} more", "", "", "", "")
        return Group(head, table)


def summary_table(result: RunResult, max_rows: int = 60) -> Table:
    """Per node: status, agent and model, duration, tokens, cost, and why it failed/skipped."""
    table = Table(title=Text(f"run {result.run_id} · {result.graph}"), title_justify="left")
    table.add_column("node")
    table.add_column("status")
    table.add_column("agent · model")
    table.add_column("time", justify="right")
    table.add_column("tokens in / out", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("note", overflow="fold", max_width=70)
    records = list(result.records.values())
    if len(records) > max_rows:  # big graphs: only what needs attention
        records = [r for r in records if r.status not in ("done", "cached")][:max_rows]
    for r in records:
        who = f"{r.agent} · {r.model}" if r.agent else "step"
        note = r.error or (f"because {r.because}" if r.because else "")
        if r.status == "cached" and r.cost_usd:
            note = note or f"saved ${r.cost_usd:.4f}"
        tokens = (
            f"{r.usage.input_tokens:,} / {r.usage.output_tokens:,}" if r.calls and r.agent else ""
        )
        table.add_row(
            Text(r.name),
            Text(r.status, style=STYLE.get(r.status, "")),
            Text(who),
            f"{r.duration:.2f}s" if r.status == "done" else "",
            tokens,
            f"${r.cost_usd:.4f}" if r.agent and r.status == "done" else "",
            Text(note),
        )
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts.items()))
    sim = " (simulated provider)" if result.provider == "simulated" else ""
    table.caption = Text(
        f"{counts} · wall {result.wall:.2f}s · cost ${result.cost_usd:.4f}{sim}"
        + (f" · store {result.store}" if result.store else "")
    )
    saved = result.savings
    if saved["cache_read_tokens"] or saved["cache_write_tokens"] or saved["batch_calls"]:
        table.caption += (
            f"\nsaved ${saved['cache_usd']:.4f} by prompt caching "
            f"({saved['cache_read_tokens']:,} tokens read, {saved['cache_write_tokens']:,} written)"
            f" and ${saved['batch_usd']:.4f} by batching ({saved['batch_calls']} batch calls)"
        )
    table.caption_justify = "left"
    return table


class PlainProgress:
    """One line per finished node for logs and pipes (no live redraw); quiet on big graphs,
    where only failures and every 10% of progress are printed."""

    def __init__(self, console: Console, verbose_limit: int = 200) -> None:
        self.console = console
        self.verbose_limit = verbose_limit
        self.total = 0
        self.finished = 0
        self._next_report = 0.1

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run_start":
            self.total = event["nodes"]
            return
        if kind == "expand":
            self.total += len(event["added"])
            return
        batch = _batch_line(event)
        if batch is not None:  # few per run, and what a batch run's log waits on
            self.console.print(Text.assemble(f"{event['t']:7.2f}s  ", batch), highlight=False)
            return
        line = self._line(event)
        if line is None:
            return
        self.finished += 1
        quiet = self.total > self.verbose_limit
        if not quiet or kind == "node_error":
            self.console.print(Text.assemble(f"{event['t']:7.2f}s  ", line), highlight=False)
        elif self.total and self.finished / self.total >= self._next_report:
            self._next_report += 0.1
            self.console.print(
                f"{event['t']:7.2f}s  {self.finished}/{self.total} nodes finished", highlight=False
            )

    @staticmethod
    def _line(event: dict[str, Any]) -> Text | None:
        """One line as `Text`: names and errors are literal, whatever brackets they hold."""
        kind, node = event["event"], str(event.get("node"))
        if kind == "node_complete":
            cost = f" ${event['cost']:.4f}" if event.get("cost") else ""
            return Text(f"done     {node} ({event['duration']:.2f}s{cost})")
        if kind == "cache_hit":
            return Text(f"cached   {node}")
        if kind == "node_error":
            word = "cancelled" if event["error"] in CANCEL_WORDS else "failed"
            style = STYLE[word]
            return Text.assemble(
                (word, style), " " * max(1, 9 - len(word)), f"{node}: {event['error']}"
            )
        if kind == "node_skipped":
            return Text(f"skipped  {node} (because {event['because']})")
        return None


def _batch_line(event: dict[str, Any]) -> Text | None:
    """A Message Batch submitted, re-attached to, or changing state, as one log line."""
    kind = event["event"]
    batch = str(event.get("batch_id", ""))
    if kind == "batch_submitted":
        nodes = ", ".join(event.get("nodes") or ())
        return Text(f"batch    {batch} submitted: {event.get('requests')} request(s) for {nodes}")
    if kind == "batch_reattached":
        return Text(f"batch    {batch} re-attached for {event.get('node')} (a killed run's)")
    if kind == "batch_status":
        state = str(event.get("status"))
        return Text(f"batch    {batch} {BATCH_WORDS.get(state, state)}")
    return None
