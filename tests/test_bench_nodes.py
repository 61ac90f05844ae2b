"""The fanout-nodes scenario's bookkeeping: where each member sits, and what each node must hear
from Redis (the figure the servers' own `chat_fanout_frames_heard` is compared with)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench.nodes import needed_per_node, placement
from bench.scenarios import Shape


def test_every_room_spans_two_nodes_and_four_nodes_each_serve_half_the_rooms() -> None:
    shape = Shape(node_rooms=8, node_members=10, node_span=2)
    node_of = placement(shape, 4)
    rooms = [set(node_of[r * 10 : r * 10 + 10]) for r in range(8)]
    assert all(len(nodes) == 2 for nodes in rooms)
    for node in range(4):
        assert sum(node in nodes for nodes in rooms) == 4
    # Members alternate, so each of a room's two nodes holds five of them.
    assert [node_of[:10].count(n) for n in (0, 1)] == [5, 5]
    assert set(placement(shape, 2)[:10]) == {0, 1}


def test_a_node_needs_what_the_other_nodes_sent_in_its_rooms_only() -> None:
    # Two rooms of two members: room 0 on nodes 0 and 1, room 1 on nodes 1 and 2.
    node_of = [0, 1, 1, 2]
    sent = [3, 5, 7, 11]
    clients: list[Any] = [SimpleNamespace(sent=s) for s in sent]
    needed = needed_per_node(clients, node_of, nodes=3, members=2)
    # Node 0 hears room 0's node-1 sender; node 1 hears room 0's node-0 sender and room 1's
    # node-2 sender; node 2 hears room 1's node-1 sender. Nothing of a room a node does not serve.
    assert needed == [5, 3 + 11, 7]
