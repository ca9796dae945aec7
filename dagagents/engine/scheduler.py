"""The eager scheduler core: which node may start next. No I/O, no asyncio, no clocks.

Modelled on `graphlib.TopologicalSorter` (prepare / get_ready / done): a node becomes ready the
moment its last dependency is done, never at a level or superstep barrier. Among ready nodes
the one with the longest remaining path to a sink goes first (critical-path list scheduling).
A failed node skips exactly its descendants; the graph may grow while it runs.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

import networkx as nx

from dagagents.model.graph import topological_order

# One vocabulary for a node's state, shared by the sorter and the run's node records.
# CACHED is a record's word for a node answered by its checkpoint: DONE to the sorter.
PENDING, READY, RUNNING, DONE, CACHED, FAILED, CANCELLED, SKIPPED = (
    "pending",
    "ready",
    "running",
    "done",
    "cached",
    "failed",
    "cancelled",
    "skipped",
)


def remaining_path_lengths(
    graph: nx.DiGraph, duration: Callable[[str], float], order: Sequence[str] | None = None
) -> dict[str, float]:
    """For each node: its duration plus the longest chain of durations below it. `order`:
    the nodes in dependency order if the caller has it (`Graph.validate` returns it)."""
    succ = dict(graph.adjacency())  # node -> {successor: edge data}, networkx's own dicts
    longest: dict[str, float] = {}
    for node in reversed(order if order is not None else topological_order(succ)):
        below = succ[node]
        longest[node] = duration(node) + (max(map(longest.__getitem__, below)) if below else 0.0)
    return longest


def critical_path(graph: nx.DiGraph, duration: Mapping[str, float]) -> tuple[list[str], float]:
    """The chain of dependent nodes with the largest total duration (missing nodes count 0):
    the same longest remaining path that ranks ready nodes."""
    longest = remaining_path_lengths(graph, lambda n: duration.get(n, 0.0))
    if not longest:
        return [], 0.0
    node = max((n for n in graph if graph.in_degree(n) == 0), key=longest.__getitem__)
    path = [node]
    while graph.out_degree(node):
        node = max(graph.successors(node), key=longest.__getitem__)
        path.append(node)
    return path, longest[path[0]]


class EagerSorter:
    """Tracks readiness of every node; hands out ready nodes by priority.

    Ready nodes wait in one FIFO queue per distinct priority, and a heap holds the distinct
    priorities: many ready nodes of equal priority (a wide graph) cost O(1) each, not a heap
    operation over all of them."""

    def __init__(self, graph: nx.DiGraph, priority: Mapping[str, float]) -> None:
        # Successors and in-degrees only of the nodes that have any: a wide graph's
        # 100,000 independent nodes cost no list and no counter each.
        self._succ: dict[str, list[str]] = {n: list(s) for n, s in graph.adjacency() if s}
        self._waiting: dict[str, int] = {}
        for nbrs in self._succ.values():
            for succ in nbrs:
                self._waiting[succ] = self._waiting.get(succ, 0) + 1
        self._priority = dict(priority)
        self.state: dict[str, str] = dict.fromkeys(graph, PENDING)
        self._ready: list[float] = []  # heap of -priority, one per non-empty queue
        self._queues: dict[float, deque[str]] = {}  # -priority -> ready nodes, FIFO
        self._open = len(self.state)
        waiting = self._waiting
        self._push([node for node in self.state if node not in waiting])

    def _push(self, nodes: Iterable[str]) -> None:
        """These nodes are ready: each joins the queue of its priority."""
        state, priority, queues = self.state, self._priority, self._queues
        for node in nodes:
            state[node] = READY
            key = -priority.get(node, 0.0)
            queue = queues.get(key)
            if queue is None:
                queue = queues[key] = deque()
                heapq.heappush(self._ready, key)
            queue.append(node)

    def _drop_unready(self) -> None:
        """Remove from the queues the nodes no longer ready (skipped)."""
        state = self.state
        for key, queue in list(self._queues.items()):
            kept = deque(n for n in queue if state[n] == READY)
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
        self._ready = list(self._queues)
        heapq.heapify(self._ready)

    # ------------------------------------------------------------------ queries
    def is_active(self) -> bool:
        """True while some node is neither done, failed nor skipped."""
        return self._open > 0

    def has_ready(self) -> bool:
        return bool(self._ready)

    def remaining(self, node: str) -> float:
        """The node's priority: its expected duration plus the longest chain below it."""
        return self._priority.get(node, 0.0)

    def top_ready(self) -> float:
        """The longest remaining path among the ready nodes (0 when none is ready)."""
        return -self._ready[0] if self._ready else 0.0

    def pop_ready(self) -> str:
        """The ready node with the longest remaining path; it is now running."""
        if not self._ready:
            raise ValueError("no node is ready")
        key = self._ready[0]
        queue = self._queues[key]
        node = queue.popleft()
        if not queue:
            heapq.heappop(self._ready)
            del self._queues[key]
        self.state[node] = RUNNING
        return node

    # ------------------------------------------------------------------ updates
    def _check_running(self, node: str) -> None:
        """Only a node handed out by `pop_ready` may finish, and only once (as in graphlib).

        Checked before anything changes, so a wrong call leaves the sorter as it was instead
        of releasing a successor while another of its predecessors still runs."""
        state = self.state.get(node)
        if state is None:
            raise ValueError(f"node {node!r} was not added")
        if state == RUNNING:
            return
        if state in (PENDING, READY):
            raise ValueError(f"node {node!r} was not passed out (still not ready)")
        raise ValueError(f"node {node!r} was already marked {state}")

    def done(self, node: str) -> list[str]:
        """Mark `node` done; return the successors that became ready."""
        if self.state.get(node) != RUNNING:
            self._check_running(node)  # raises, saying what is wrong
        self.state[node] = DONE
        self._open -= 1
        newly: list[str] = []
        for succ in self._succ.get(node, ()):
            self._waiting[succ] -= 1
            if self._waiting[succ] == 0 and self.state[succ] == PENDING:
                newly.append(succ)
        if newly:
            self._push(newly)
        return newly

    def fail(self, node: str) -> list[str]:
        """Mark `node` failed and every not-yet-finished descendant skipped; return those."""
        self._check_running(node)
        self.state[node] = FAILED
        self._open -= 1
        return self._skip_from(self._succ.get(node, ()))

    def _skip_from(self, starts: Iterable[str]) -> list[str]:
        """Skip `starts` and everything below them that has not started; return those."""
        skipped: list[str] = []
        stack = list(starts)
        while stack:
            succ = stack.pop()
            if self.state[succ] in (PENDING, READY):
                self.state[succ] = SKIPPED
                self._open -= 1
                skipped.append(succ)
                stack.extend(self._succ.get(succ, ()))
        if skipped:
            self._drop_unready()
        return skipped

    def skip_unneeded(self, node: str, optional: Callable[[str, str], bool]) -> list[str]:
        """`node` will not run (its condition is false): a successor that may do without it
        (`optional(node, successor)`) proceeds as if it were done; one that requires it is
        skipped the same way, recursively. Returns the successors skipped."""
        self.state[node] = SKIPPED
        self._open -= 1
        skipped: list[str] = []
        stack = [node]
        while stack:
            src = stack.pop()
            for succ in self._succ.get(src, ()):
                if self.state[succ] not in (PENDING, READY):
                    continue
                if optional(src, succ):
                    self._waiting[succ] -= 1
                    if self._waiting[succ] == 0 and self.state[succ] == PENDING:
                        self._push((succ,))
                else:
                    self.state[succ] = SKIPPED
                    self._open -= 1
                    skipped.append(succ)
                    stack.append(succ)
        if skipped:
            self._drop_unready()
        return skipped

    def skip(self, nodes: Iterable[str]) -> list[str]:
        """Skip these nodes that have not started, and what lies below them; return those."""
        return self._skip_from(nodes)

    def forget(self, nodes: Iterable[str]) -> None:
        """Remove finished nodes and their edges, so their names may be added again (a
        streamed node its source's final answer replaced). Rare: walks every edge list."""
        gone = set(nodes)
        for n in gone:
            if self.state.get(n) in (PENDING, READY, RUNNING):
                raise ValueError(f"node {n!r} has not finished")
        for n in gone:
            self.state.pop(n, None)
            self._succ.pop(n, None)
            self._waiting.pop(n, None)
            self._priority.pop(n, None)
        for n, succ in self._succ.items():
            if gone.intersection(succ):
                self._succ[n] = [s for s in succ if s not in gone]

    def skip_all(self) -> list[str]:
        """Skip every node that has not started (fail-fast and interruption)."""
        skipped = [n for n, s in self.state.items() if s in (PENDING, READY)]
        for n in skipped:
            self.state[n] = SKIPPED
        self._open -= len(skipped)
        self._ready.clear()
        self._queues.clear()
        return skipped

    def cancelled(self, node: str) -> None:
        """A running node was cancelled: it ends without skipping anything more (the run is
        ending, or skipping the rest itself)."""
        self._check_running(node)
        self.state[node] = CANCELLED
        self._open -= 1

    def add(
        self,
        nodes: Iterable[str],
        edges: Iterable[tuple[str, str]],
        priority: Mapping[str, float],
    ) -> list[tuple[str, str]]:
        """Grow the graph (already validated acyclic by the caller).

        An edge into an existing node is only allowed while that node is pending: the
        caller checks this, since a started node cannot wait for new inputs. An edge from a
        failed, cancelled or skipped node skips its target and what lies below, exactly as `fail` does;
        returns those as (skipped node, the failed or skipped node that blocked it)."""
        new = list(nodes)
        edges = list(edges)
        fresh = set(new)
        for n in new:
            if n in self.state:
                raise ValueError(f"node {n!r} was already added")
        for src, dst in edges:
            for end in (src, dst):
                if end not in fresh and end not in self.state:
                    raise ValueError(f"edge ({src!r}, {dst!r}) names node {end!r}, never added")
            if dst not in fresh and self.state[dst] != PENDING:
                raise ValueError(
                    f"edge ({src!r}, {dst!r}) leads into a node already {self.state[dst]}"
                )
        for n in new:
            self.state[n] = PENDING
        self._open += len(new)
        self._priority.update(priority)
        blocked: list[tuple[str, str]] = []
        for src, dst in edges:
            self._succ.setdefault(src, []).append(dst)
            if self.state[src] != DONE:
                self._waiting[dst] = self._waiting.get(dst, 0) + 1
            if self.state[src] in (FAILED, CANCELLED, SKIPPED):
                blocked.append((src, dst))
        skipped = [(n, src) for src, dst in blocked for n in self._skip_from([dst])]
        waiting = self._waiting
        self._push([n for n in new if self.state[n] == PENDING and not waiting.get(n)])
        return skipped
