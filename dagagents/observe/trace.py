"""Structured run events: one orjson line per event, kept in memory and written to JSONL.

Schema (version `TRACE_VERSION`): every event has `v`, `event`, `run`, `ts` (unix seconds) and
`t` (seconds since the run started). Events and their extra fields:

- `run_start`: graph, nodes, concurrency, provider, store, executor
- `node_ready`: node (it left the queue but waits before it starts: a remote store's lookup,
  or its lease when another process may be computing it; a node that starts at once has none)
- `node_start`: node, kind, agent, model (agent and model only for agent nodes)
- `cache_hit`: node, key, saved_cost (what computing it cost when it was checkpointed)
- `retry`: node, attempt, error, wait, status, kind
- `llm_call`: node, model, turn, attempts, duration, stop_reason, usage, cost (one API call),
  batch (sent in a Message Batch), reserved_input (the ITPM reservation), saved_cache and
  saved_batch (dollars against the same call uncached at the standard price)
- `cache_warm`: node (the leader), leader, followers, prefix_tokens, wait (seconds until the
  leader's response began and the followers went); gave_up=true when a follower stopped waiting;
  released="critical_path" (node: the follower) when the critical-path rule sent a follower at
  once, with its slack, expected_wait, saving_usd (what the delayed followers would have saved)
  and usd_per_second (engine/cache_warming.py)
- `token_count`: node, model, tokens (the API's exact count), estimate (the local estimate)
- `batch_wait`: node, custom_id (the call joined the batch being collected)
- `batch_submitted`: batch_id, requests, nodes (recorded in the run folder before polling)
- `batch_status`: batch_id, status (in_progress / canceling / ended), counts
- `batch_reattached`: batch_id, node (a killed run's batch, collected instead of resubmitted)
- `batch_expired`: node, custom_id (resubmitted once)
- `rate_limited`: node, model, wait, limit (which client-side bucket made the call wait)
- `concurrency_reduced`: node, model, limit, status (a 429/529 halved that model's slots)
- `tool_call`: node, tool, input, duration, error
- `message`: src, dst (an output delivered along an edge, when dst starts)
- `expand`: node, added (names), edges, agents {node: agent}, models {node: model}, streamed
  (true when added while node's reply was still streaming, e.g. a streamed plan's subtask)
- `node_complete`: node, duration, model, usage {input_tokens, ...}, cost, key, simulated
  (a field that would be null, zero or false is left out: a step has only node and
  duration, plus key with a store; readers default the rest)
- `node_error`: node, error, traceback (last frames, for non-dagagents exceptions)
- `node_skipped`: node, because (the failed ancestor, or the reason)
- `node_waiting`: node, prompt, key (an approval node waits for a decision)
- `approval`: node, approved, reason (an in-process approver decided)
- `warning`: node, message
- `run_end`: status, wall, counts {status: n}, cost

Listeners alone (never written, never kept) also see `token`: node, text (a streamed delta of
an agent's reply; see `Tracer.stream`), `prompt`: node, prompt, system (what an agent node is
sending), and `limits` (the limiter's snapshot, every 0.2 s). The trace keeps only the final
output's digest.

Values are the caller's; the tracer never reads the environment, so no secret can leak in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, TypeAlias, overload

import orjson

TRACE_VERSION = 1
_clock = time.perf_counter

Listener = Callable[[dict[str, Any]], None]
# `emit(event, **fields)`: how the engine reports an event (a Tracer's `emit`, or `no_emit`).
Emit = Callable[..., object]  # what it returns (`Tracer.emit`: the time) is not needed


def no_emit(event: str, **fields: Any) -> None:
    """An Emit that reports nothing (calls made outside a run)."""
    return None


class BackgroundSink:
    """A trace sink on a remote (fsspec) store, written off the event loop.

    `write` only queues the line (a deque: appends and pops are atomic, so the loop and the
    writing thread need no lock); `drain`, called in a thread (`Tracer.aflush`, `aclose`),
    writes what is queued to the remote file and flushes it, which may upload. The loop never
    waits for the network."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self._queued: deque[bytes] = deque()

    def write(self, line: bytes) -> int:
        self._queued.append(line)
        return len(line)

    def flush(self) -> None:
        """Nothing on the loop: `drain` does it in a thread."""

    def drain(self) -> None:
        lines: list[bytes] = []
        with contextlib.suppress(IndexError):
            while True:
                lines.append(self._queued.popleft())
        if lines:
            self.target.write(b"".join(lines))
        self.target.flush()

    def close(self) -> None:
        self.drain()
        self.target.close()


# Where trace lines go: a binary file, or a remote one written off the loop.
Sink: TypeAlias = "IO[bytes] | BackgroundSink"


def trace_record(
    event: str, run_id: str, t0: float, t: float, fields: dict[str, Any]
) -> dict[str, Any]:
    """An event as the trace writes it (the schema above)."""
    return {"v": TRACE_VERSION, "event": event, "run": run_id, "ts": t0 + t, "t": t, **fields}


# Keys of a compact kept entry (see `KeptEvents`): no keyword argument can be named so.
_EVENT, _T = "(event)", "(t)"


class KeptEvents(Sequence[dict[str, Any]]):
    """A run's kept events, read as trace records (`RunResult.events`).

    While no sink writes an event and no listener sees it, the tracer keeps only the event's
    own fields, with its name and time under two extra keys: building the record costs more
    than the rest of emitting it, and most runs in a program never read their events. A dict
    of plain values is also one the garbage collector never visits (a tuple holding a dict
    would be, in every full collection of a 100,000-node run). An entry becomes its record,
    once, when first read."""

    def __init__(self, kept: list[dict[str, Any]], run_id: str, t0: float) -> None:
        self._kept = kept
        self._run_id = run_id
        self._t0 = t0

    def _record(self, i: int) -> dict[str, Any]:
        entry = self._kept[i]
        if _EVENT in entry:
            event, t = entry.pop(_EVENT), entry.pop(_T)
            entry = self._kept[i] = trace_record(event, self._run_id, self._t0, t, entry)
        return entry

    def __len__(self) -> int:
        return len(self._kept)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self._kept)))]
        return self._record(range(len(self._kept))[index])  # negative indices, IndexError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self._kept)):
            yield self._record(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it reads

    def __repr__(self) -> str:
        return f"KeptEvents({list(self)!r})"


class Tracer:
    """Collects events for one run; optionally streams them to files and listeners."""

    def __init__(
        self,
        run_id: str,
        *,
        sinks: list[Sink] | None = None,
        keep: bool = True,
        flush_every: float = 0.25,
    ) -> None:
        self.run_id = run_id
        self.t0 = time.time()
        self._perf0 = time.perf_counter()
        # Kept events: records, or compact entries while no sink or listener needed the
        # record (see `KeptEvents`).
        self._kept: list[dict[str, Any]] = []
        self._keep = keep
        self._sinks = sinks or []
        self._listeners: list[Listener] = []
        self._token_listeners: list[Listener] = []
        self._flush_every = flush_every
        self._next_flush = flush_every  # run time (t) after which an emit flushes the sinks
        # Sinks that failed (a full or read-only disk) and why: dropped, so the run goes on
        # and the caller says once what was not written.
        self.failed_sinks: list[tuple[Sink, OSError]] = []

    @property
    def events(self) -> KeptEvents:
        """The events kept so far, as trace records."""
        return KeptEvents(self._kept, self.run_id, self.t0)

    def now(self) -> float:
        """Seconds since the run started (monotonic)."""
        return _clock() - self._perf0

    def subscribe(self, listener: Listener) -> None:
        """`listener` sees every event; it also gets `token` events unless it says it has no
        use for them (a `wants_tokens = False` attribute), which spares streaming entirely
        when nobody shows text."""
        self._listeners.append(listener)
        if getattr(listener, "wants_tokens", True):
            self._token_listeners.append(listener)

    @property
    def listening(self) -> bool:
        """Whether anyone would see `stream` events (else callers need not produce them)."""
        return bool(self._token_listeners)

    def stream(self, event: str, **fields: Any) -> None:
        """An ephemeral event for listeners only: not written to the trace, not kept, so
        token deltas cost nothing on disk and traces stay small."""
        if not self._token_listeners:
            return
        t = _clock() - self._perf0
        record = trace_record(event, self.run_id, self.t0, t, fields)
        for listener in self._token_listeners:
            listener(record)

    def emit(self, event: str, **fields: Any) -> float:
        """Record an event; returns its time `t` (seconds since the run started)."""
        t = _clock() - self._perf0
        if not (self._sinks or self._listeners):  # only kept: its record is built if read
            if self._keep:
                fields[_EVENT] = event
                fields[_T] = t
                self._kept.append(fields)
            return t
        record = trace_record(event, self.run_id, self.t0, t, fields)
        if self._keep:
            self._kept.append(record)
        if self._sinks:
            line = orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
            for sink in self._sinks:
                try:
                    sink.write(line)
                except OSError as exc:
                    self._drop(sink, exc)
            if t > self._next_flush:
                self.flush()
        for listener in self._listeners:
            listener(record)
        return t

    def _drop(self, sink: Sink, exc: OSError) -> None:
        if any(s is sink for s, _ in self.failed_sinks):
            return
        self.failed_sinks.append((sink, exc))
        self._sinks = [s for s in self._sinks if s is not sink]  # rebinds: loops go on
        with contextlib.suppress(OSError):
            sink.close()

    def flush(self) -> None:
        self._next_flush = self.now() + self._flush_every
        for sink in self._sinks:
            try:
                sink.flush()
            except OSError as exc:
                self._drop(sink, exc)

    async def aflush(self) -> None:
        """`flush`, and what `BackgroundSink`s queued written and flushed in a thread."""
        self.flush()
        for sink in self._sinks:
            if isinstance(sink, BackgroundSink):
                try:
                    await asyncio.to_thread(sink.drain)
                except OSError as exc:
                    self._drop(sink, exc)

    async def aclose(self) -> None:
        """`close`, with `BackgroundSink`s drained and closed in a thread."""
        for sink in self._sinks:
            if isinstance(sink, BackgroundSink):
                try:
                    await asyncio.to_thread(sink.close)
                except OSError as exc:
                    self._drop(sink, exc)
        self._sinks = [s for s in self._sinks if not isinstance(s, BackgroundSink)]
        self.close()

    def close(self) -> None:
        self.flush()
        for sink in self._sinks:
            try:
                sink.close()
            except OSError as exc:
                self._drop(sink, exc)
        self._sinks = []
