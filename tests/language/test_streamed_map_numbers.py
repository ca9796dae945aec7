"""A streamed map over a list of numbers: each item starts once the next number begins, as an
item of strings or objects does, though no delta of such a reply holds a bracket or a quote
(the reply is read delta by delta, never gated on the characters a delta holds).
"""

from __future__ import annotations

from pydantic import BaseModel
from recording import Recording, position, streamed_expands

from dagagents import Agent, Graph


class Numbers(BaseModel):
    items: list[int]


def test_items_of_a_list_of_numbers_start_one_by_one_while_it_streams() -> None:
    sim = Recording(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=1.0)
    # word-sized deltas: `{"items": ` `[10, ` `11, ` ... `14]}`: after `[10, `, none holds
    # `{}[]"`, yet each completes the item before it
    sim.script('{"items": [10, 11, 12, 13, 14]}', agent="lister", latency=0.2)
    g = Graph("numbers", output="out", simulator=sim)
    g.task("xs", Agent("lister"), "List numbers.", output=Numbers)

    def double(item: int) -> int:
        return 2 * item

    g.map("out", double, over="xs.items")
    result = g.run(store=None)
    assert result.ok, result.errors
    assert result.outputs["out"] == [20, 22, 24, 26, 28]
    done = position(result, "node_complete", "xs")
    for i in range(5):
        assert position(result, "node_start", f"out[{i}]") < done
    # one growth per delta that completes items, in list order, not one for the whole list
    # at its end: the last delta `14]}` begins 14 (completing 13) and closes the list
    added = [e["added"] for e in streamed_expands(result)]
    assert added == [["out[0]"], ["out[1]"], ["out[2]"], ["out[3]", "out[4]"]]
