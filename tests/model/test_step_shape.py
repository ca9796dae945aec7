"""A step function's shape (named parameters, `**kwargs`, async) is read from its signature
once per `def` and reused: validation and every node's call ask for it. What a user relies on:
each kind of callable gets its own true shape, and the cache keeps nothing of theirs alive."""

from __future__ import annotations

import functools
import gc
import weakref
from typing import Any

from dagagents import Graph
from dagagents.model.nodes import shape_of


def _closures(n: int) -> list[Any]:
    def make(i: int) -> Any:
        async def body(x: int, y: int = i, **rest: Any) -> int:
            return x + y

        return body

    return [make(i) for i in range(n)]


def test_closures_of_one_def_share_a_shape_and_keep_their_own_defaults() -> None:
    first, second = _closures(2)
    assert shape_of(first) is shape_of(second)
    shape = shape_of(first)
    assert [p.name for p in shape.params] == ["x", "y"]
    assert shape.var_keyword and shape.is_async


def test_a_bound_method_has_no_self_and_is_not_kept_alive() -> None:
    class Worker:
        def step(self, a: int, b: int = 2) -> int:
            return a + b

    worker = Worker()
    bound = shape_of(worker.step)
    assert [p.name for p in bound.params] == ["a", "b"] and not bound.is_async
    assert [p.name for p in shape_of(Worker.step).params] == ["self", "a", "b"]
    alive = weakref.ref(worker)
    del worker
    gc.collect()
    assert alive() is None


def test_partials_and_callable_objects_read_their_own_signature() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    class Caller:
        async def __call__(self, c: int) -> int:
            return c

    assert [p.name for p in shape_of(functools.partial(add, b=1)).params] == ["a", "b"]
    called = shape_of(Caller())
    assert [p.name for p in called.params] == ["c"] and called.is_async


def test_a_method_step_runs_with_its_dependency() -> None:
    class Doubler:
        def twice(self, a: int) -> int:
            return 2 * a

    g = Graph("methods")
    g.add_step("a", lambda: 21)
    g.add_step("b", Doubler().twice)
    assert g.run(store=None).outputs["b"] == 42
