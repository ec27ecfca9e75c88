"""Evaluation behaviours behave in a real node as in the simulator: ``label_flip`` trains on
flipped labels, ``copier`` (which needs updates a node cannot see) is refused before joining."""

from __future__ import annotations

import numpy as np
import pytest

from marketplace.errors import ConfigError
from marketplace.fl import get_behaviour, partition
from marketplace.protocol.session import TaskSession
from node.peers.journal import Journal
from node.peers.trainer import TrainerNode

from .test_protocol import new_task, world  # noqa: F401 (the module-scoped fixture)

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]


def _node(world, task_id, behaviour):  # noqa: F811
    splits = world["splits"]
    part = partition("iid", splits.train.y, num_clients=4, seed=0)[0]
    t = world["trainers"][0]
    return TrainerNode(
        TaskSession.open(world["market"], world["store"], task_id, t),
        splits.train.subset(part),
        Journal(world["tmp"] / f"b{task_id}-{behaviour}.sqlite"),
        behaviour=get_behaviour(behaviour),
    ), splits.train.subset(part)


def test_label_flip_poisons_what_the_node_trains_on(world):  # noqa: F811
    task_id = new_task(world)
    node, original = _node(world, task_id, "label_flip")
    assert np.array_equal(node.data.y, 9 - original.y)
    assert np.array_equal(node.data.x, original.x)
    honest, _ = _node(world, task_id, "honest")
    assert np.array_equal(honest.data.y, original.y)


def test_copier_is_refused_before_joining(world):  # noqa: F811
    task_id = new_task(world)
    before = world["market"].task(task_id).trainer_count
    with pytest.raises(ConfigError, match="copier runs only in the simulator"):
        _node(world, task_id, "copier")
    assert world["market"].task(task_id).trainer_count == before
