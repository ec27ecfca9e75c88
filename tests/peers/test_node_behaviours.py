"""Evaluation behaviours behave in a real node as in the simulator: ``label_flip`` trains on
flipped labels, ``copier`` (which needs updates a node cannot see) is refused before joining.
A model posted on-chain that differs from a node's own is a loud error, and the node follows it."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest

from marketplace.errors import ConfigError
from marketplace.fl import get_behaviour, partition
from marketplace.protocol.session import TaskSession
from node.peers.journal import Journal
from node.peers.trainer import TrainerNode

from .test_protocol import (  # noqa: F401 (world: the module-scoped fixture)
    join_all,
    new_task,
    trainer_nodes,
    world,
)

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


def test_a_model_mismatch_is_loud_and_the_node_follows_the_posted_model(world, caplog):  # noqa: F811
    market = world["market"]
    task_id = new_task(world, rounds=2, n_trainers=2)
    first, second = trainer_nodes(world, task_id, n=2)
    join_all(world, task_id, [first, second])
    for node in (first, second):  # round 1: both train and commit; the last one closes it
        assert node.step().action.startswith("committed round 1")
    assert market.task(task_id).current_round == 2
    assert market.model_digest(task_id, 2) == bytes(32)
    # The first poster's round-2 model is not what the second computes (as when a poster missed
    # an update): here it is tampered, sealed for the members and posted first.
    own = first.session.global_weights(2)
    first.session._globals[2] = {k: v + 0.01 for k, v in own.items()}
    first._post_model(2)
    posted = market.model_digest(task_id, 2)
    assert posted != second.session.model_digest(2)
    with caplog.at_level(logging.WARNING):
        said = second._check_or_post_model(2)
    assert said == "MODEL MISMATCH in round 2: reported; now following the on-chain model"
    loud = [r for r in caplog.records if "MODEL MISMATCH" in r.getMessage()]
    assert loud and loud[0].levelno == logging.ERROR
    reported = market.events(market.market, "ModelMismatchReported", filters={"taskId": task_id})
    assert len(reported) == 1
    assert second.session.model_digest(2) == posted  # follows the chain from now on
    assert second._check_or_post_model(2) is None  # reported once


def test_an_update_no_provider_serves_is_retried_then_scored_missing_in_time_to_commit(world):  # noqa: F811
    """An oracle never crashes on a fetch: an update nobody serves is transient (the run loop
    retries it) until the commit deadline is near; then the oracle scores without it and commits
    rather than miss the window."""
    from marketplace.chain.devnet import advance_chain_time
    from marketplace.errors import ContentUnavailableError
    from marketplace.resilience import is_transient
    from marketplace.storage.cid import raw_cid
    from marketplace.storage.kubo import KuboStore
    from node.peers.oracle import COMMIT_MARGIN_SECONDS, OracleNode

    market = world["market"]
    task_id = new_task(world, rounds=1, n_trainers=2)
    honest, _ = trainer_nodes(world, task_id, n=2)
    join_all(world, task_id, [honest, _])
    ghost = world["trainers"][1]  # commits a CID no IPFS provider holds
    blob = b"an update that was never put anywhere"
    market.commit_update(ghost.eth, task_id, 1, raw_cid(blob), hashlib.sha256(blob).digest(), 100)
    assert honest.step().action == "committed round 1 and closed it"
    store = KuboStore(world["store"].api_multiaddr, timeout=2.0, retries=0)
    oracle = OracleNode(
        TaskSession.open(market, store, task_id, world["oracles"][0]),
        Journal(world["tmp"] / f"o{task_id}-missing.sqlite"),
    )
    with pytest.raises(ContentUnavailableError) as waited:
        oracle.step()  # early in the commit phase: wait for it (the run loop retries)
    assert is_transient(waited.value) and "retrying" in str(waited.value)
    assert market.commitment_of(task_id, oracle.me) == bytes(32)
    info = market.task(task_id)
    advance_chain_time(
        market.w3, int(info.phase_deadline) - market.now() - COMMIT_MARGIN_SECONDS // 2
    )
    assert oracle.step().action.startswith("committed root")
    assert market.commitment_of(task_id, oracle.me) != bytes(32)
    updates = oracle.session.round_updates(1)
    assert [u.sender for u in updates.valid] == [honest.me]
    assert set(updates.invalid) == {ghost.address}
