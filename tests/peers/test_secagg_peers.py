"""Secure aggregation between peers on a real Anvil chain and two real Kubo daemons.

The four trainers (and the oracle) run in this one process, but they share nothing in memory:
each has its own session, its own Kubo client (two on daemon A, two on daemon B) and talks to
the others only through the chain (task, membership, registered X25519 keys, on-chain commits,
the round's closing) and Kubo (stored blobs, signed pubsub messages). Their inputs are real
PyTorch updates (one local epoch on a digits shard).

Float tolerance: each input is rounded to 16 fractional bits (error ≤ 2^-17 per coordinate), and
the ring sum is exact, so the mean of the survivors is within 2^-17 of the float mean of their
clipped inputs, coordinate by coordinate; the peers' aggregates are bit-identical.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from marketkit import Member, market_with
from web3 import Web3

from marketplace.chain.clients import Marketplace, Role
from marketplace.crypto.envelope import EnvelopeContext, open_envelope
from marketplace.crypto.secagg import SecAggParams, SecAggTerms, clip_vector
from marketplace.errors import ConfigError, CryptoError
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, partition, split_dataset
from marketplace.fl.train import train_local
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.secagg_committee import committee_review, committee_round, flagged
from marketplace.protocol.secagg_exchange import (
    Kind,
    Manifest,
    MemoryJournal,
    SecAggPeer,
    Stage,
    secagg_topic,
)
from marketplace.protocol.session import TaskSession
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon
from marketplace.storage.pubsub import PubsubClient
from node.peers.journal import Journal

SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)
LOCAL = TrainConfig(epochs=1, lr=0.1, batch_size=16)
CLIP = 0.5
CHEAT_CLIP = 4.0  # the cheater encodes with this clip instead of the task's
TOKEN = 10**18
WAIT = 120.0
TOLERANCE = 2.0**-17 + 1e-12


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


class World:
    """A secure-aggregation task with four joined trainers and a one-oracle committee."""

    def __init__(self, w3: Web3, daemons: tuple[KuboDaemon, KuboDaemon]) -> None:
        deployer, requester = Identity.dev(0), Identity.dev(11)
        self.trainers = [Identity.dev(i) for i in (12, 13, 14, 15)]
        self.oracle = Identity.dev(16)
        self.market: Marketplace = market_with(w3, deployer.eth, [
            Member.of(requester, Role.REQUESTER, tokens=1_000 * TOKEN),
            *(Member.of(t, Role.TRAINER, stake=10 * TOKEN, tokens=100 * TOKEN)
              for t in self.trainers),
            Member.of(self.oracle, Role.ORACLE, stake=10 * TOKEN, tokens=100 * TOKEN),
        ])  # fmt: skip
        self.stores = [KuboStore(daemons[i % 2].api_multiaddr) for i in range(5)]
        self.pubsubs = [PubsubClient(daemons[i % 2].api_multiaddr) for i in range(4)]
        digits = split_dataset(
            load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0
        )
        plan = TaskPlan(
            model=SPEC, train=LOCAL, budget=10 * TOKEN, rounds=1, min_trainers=4, max_trainers=4,
            oracles=(self.oracle.address,), quorum_bps=10_000, secagg=SecAggTerms(clip_norm=CLIP),
        )  # fmt: skip
        self.task_id, _ = create_task(
            self.market, self.stores[0], requester, plan, digits.validation.x, digits.validation.y
        )
        self.market.accept_seat(self.oracle.eth, self.task_id)
        for t in self.trainers:
            self.market.join(t.eth, self.task_id)
        self.market.advance(self.trainers[0].eth, self.task_id)  # full: training starts
        self.sessions = [
            TaskSession.open(self.market, store, self.task_id, t)
            for t, store in zip(self.trainers, self.stores[:4], strict=True)
        ]
        shards = partition("iid", digits.train.y, num_clients=4, seed=0)
        self.inputs = {}
        for t, s, rows in zip(self.trainers, self.sessions, shards, strict=True):
            delta = train_local(SPEC, s.global_weights(1), digits.train.subset(rows), LOCAL).delta
            self.inputs[t.address] = np.concatenate(
                [delta[k].numpy().ravel() for k in sorted(delta)]
            )

    def close(self) -> None:
        for client in (*self.stores, *self.pubsubs):
            client.close()


@pytest.fixture
def world(
    w3: Web3, chain_snapshot: None, kubo_pair: tuple[KuboDaemon, KuboDaemon]
) -> Iterator[World]:
    built = World(w3, kubo_pair)
    yield built
    built.close()


def drive(peers: list[SecAggPeer], world: World, *, closer: int) -> None:
    """Step every live peer in turn until all are done; once every live peer waits for the round
    to close, move the chain past the round's deadline and close it (what a node's closer does)."""
    deadline = time.monotonic() + WAIT
    closed = False
    while not all(p.stage is Stage.DONE for p in peers):
        if time.monotonic() > deadline:
            pytest.fail(f"round did not finish: {[(p.me[:8], p.stage) for p in peers]}")
        for p in peers:
            p.step()
        if not closed and all(p.stage is Stage.WAIT_CLOSE for p in peers):
            info = world.market.task(world.task_id)
            world.market.increase_time(max(1, info.phase_deadline - world.market.now() + 1))
            world.market.advance(world.trainers[closer].eth, world.task_id)
            closed = True
        time.sleep(0.1)


@pytest.mark.parametrize("drop_at", [Stage.MASK, Stage.WAIT_CLOSE])
def test_a_secure_aggregation_round_survives_a_dropout_and_hides_each_update_from_peers(
    world: World, drop_at: Stage
) -> None:
    # Prepare: one peer per trainer, subscribed; trainer 1 ignores the clip (the committee's job)
    peers = [
        SecAggPeer(s, ps, round_=1, vector=world.inputs[t.address], num_samples=1)
        for s, ps, t in zip(world.sessions, world.pubsubs, world.trainers, strict=True)
    ]  # fmt: skip
    cheater, dropper = peers[1], peers[3]
    cheater.trainer.params = SecAggParams(clip_norm=CHEAT_CLIP, threshold=cheater.params.threshold)
    try:
        topic = secagg_topic(world.market.deployment.chain_id, world.market.market.address,
                             world.task_id)  # fmt: skip
        for ps in world.pubsubs[:2]:
            ps.wait_for_peers(topic, 1, timeout=30)

        # Execute: the dropper shares its seeds, then (drop_at=MASK) vanishes before sending its
        # masked input, or (drop_at=WAIT_CLOSE) vanishes right after committing it on-chain
        deadline = time.monotonic() + WAIT
        while dropper.stage is not drop_at:
            assert time.monotonic() < deadline, [(p.me[:8], p.stage) for p in peers]
            for p in peers:
                p.step()
            time.sleep(0.1)
        dropper.stop()
        live = peers[:3]
        drive(live, world, closer=0)

        # Assert: every live peer has the same aggregate, the mean of the survivors' clipped inputs
        survivors = [p for p in peers if drop_at is Stage.WAIT_CLOSE or p is not dropper]
        assert {p.survivors for p in live} == {tuple(sorted(q.me for q in survivors))}
        expected = np.mean(
            [clip_vector(p.vector, CHEAT_CLIP if p is cheater else CLIP) for p in survivors], axis=0
        )
        first = live[0].aggregate
        assert first is not None
        for p in live[1:]:
            assert p.aggregate is not None and np.array_equal(p.aggregate, first)
        assert np.max(np.abs(first - expected)) <= TOLERANCE
        assert not np.allclose(first, np.mean([clip_vector(p.vector, CLIP) for p in peers], 0))

        # Assert: a peer cannot open another's plaintext (sealed to the committee alone)
        victim = live[0].session
        c = next(c for c in victim.committed(1) if c.sender == world.trainers[0].address)
        manifest = Manifest.from_json(victim.store.get(c.cid))
        sealed = victim.store.get(manifest.sealed_cid)
        for spy in world.trainers[1:]:
            with pytest.raises(CryptoError):
                open_envelope(
                    sealed, recipient_address=spy.address, x25519_private=spy.x25519_private,
                    expected_context=EnvelopeContext(
                        world.market.deployment.chain_id, world.task_id, 1, c.sender
                    ),
                )  # fmt: skip

        # Assert: the committee opens every survivor's plaintext and flags the clip violator
        oracle = TaskSession.open(world.market, world.stores[4], world.task_id, world.oracle)
        review = committee_review(oracle, 1)
        assert set(review) == {p.me for p in survivors}
        assert flagged(review) == [cheater.me]
    finally:
        for p in peers:
            p.stop()


def test_a_peer_rebuilt_from_its_journal_resends_the_same_messages_and_masks_the_same_bytes(
    world: World,
) -> None:
    # Prepare: every peer journals; trainer 3 will be rebuilt mid-round (a restarted node)
    journals = [MemoryJournal() for _ in world.trainers]
    peers = [
        SecAggPeer(s, ps, round_=1, vector=world.inputs[t.address], num_samples=1, journal=j)
        for s, ps, t, j in zip(world.sessions, world.pubsubs, world.trainers, journals, strict=True)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        while peers[3].stage is not Stage.WAIT_CLOSE:
            assert time.monotonic() < deadline, [(p.me[:8], p.stage) for p in peers]
            for p in peers:
                p.step()
            time.sleep(0.1)
        first_shares = list(peers[3]._outbox)
        committed_before = world.sessions[3].committed(1)

        # Execute: the node "crashes" after committing and comes back over the same journal
        peers[3].stop()
        reborn = SecAggPeer(
            world.sessions[3], world.pubsubs[3], round_=1, num_samples=1, journal=journals[3],
            vector=world.inputs[world.trainers[3].address],
        )  # fmt: skip
        peers[3] = reborn
        assert reborn.stage is Stage.COLLECT_SHARES and reborn._outbox == first_shares
        drive(peers, world, closer=0)

        # Assert: no second commit, the same aggregate everywhere, exactly the committee's mean
        after = world.sessions[0].committed(1)
        assert len(after) == 4 and [c for c in after if c.sender == reborn.me] == [
            c for c in committed_before if c.sender == reborn.me
        ]
        first = peers[0].aggregate
        assert first is not None
        assert all(p.aggregate is not None and np.array_equal(p.aggregate, first) for p in peers)
        oracle = TaskSession.open(world.market, world.stores[4], world.task_id, world.oracle)
        opened = committee_round(oracle, 1)
        assert opened.reproducible and opened.mean is not None
        assert np.array_equal(opened.mean, first)  # the committee's recompute is bit-exact
        assert flagged(committee_review(oracle, 1)) == []
    finally:
        for p in peers:
            p.stop()


def test_a_late_subscriber_gets_the_shares_of_a_sender_that_crashed_through_the_others_relay(
    world: World,
) -> None:
    # Prepare: trainers 0-2 share and collect; trainer 3 has not subscribed yet (a slow node)
    peers = [
        SecAggPeer(s, ps, round_=1, vector=world.inputs[t.address], num_samples=1)
        for s, ps, t in list(zip(world.sessions, world.pubsubs, world.trainers, strict=True))[:3]
    ]  # fmt: skip
    crasher = peers[0]
    late: SecAggPeer | None = None
    try:
        deadline = time.monotonic() + WAIT
        while not all(crasher.me in p._received(Kind.SHARES) for p in peers[1:]):
            assert time.monotonic() < deadline, [(p.me[:8], p.stage) for p in peers]
            for p in peers:
                p.step()
            time.sleep(0.1)
        # Execute: the crasher dies; only then does trainer 3 subscribe and share
        crasher.stop()
        late = SecAggPeer(
            world.sessions[3], world.pubsubs[3], round_=1, num_samples=1,
            vector=world.inputs[world.trainers[3].address],
        )  # fmt: skip
        live = [*peers[1:], late]
        deadline = time.monotonic() + WAIT
        while late.stage in (Stage.SHARE, Stage.COLLECT_SHARES):
            assert time.monotonic() < deadline, late.step()  # names what it still waits for
            for p in live:
                p.step()
            time.sleep(0.1)
        # Assert: the late peer holds the crasher's shares (relayed: the crasher was gone)
        assert crasher.me in late._received(Kind.SHARES)
        assert late.stage in (Stage.MASK, Stage.WAIT_CLOSE)
    finally:
        for p in [*peers, *([late] if late is not None else [])]:
            p.stop()


def test_the_shares_of_a_sender_nobody_heard_come_from_its_commit_after_it_crashes(
    world: World,
) -> None:
    # Prepare: trainer 0's share messages are lost on the way (its other messages are not)
    peers = [
        SecAggPeer(s, ps, round_=1, vector=world.inputs[t.address], num_samples=1)
        for s, ps, t in zip(world.sessions, world.pubsubs, world.trainers, strict=True)
    ]  # fmt: skip
    crasher, others = peers[0], peers[1:]
    publish = crasher._receiver.publish

    def lossy(message: bytes) -> None:
        if json.loads(message)["kind"] != int(Kind.SHARES):
            publish(message)

    crasher._receiver.publish = lossy  # type: ignore[method-assign]
    try:
        # Execute: it collects the others' shares, commits its masked input and crashes
        deadline = time.monotonic() + WAIT
        while world.market.update_of(world.task_id, 1, crasher.me)[0] == bytes(32):
            assert time.monotonic() < deadline, [(p.me[:8], p.stage) for p in peers]
            for p in peers:
                p.step()
            time.sleep(0.1)
        crasher.stop()
        drive(others, world, closer=1)

        # Assert: the others took its shares from its manifest, and summed all four inputs
        for p in others:
            assert crasher.me in p._received(Kind.SHARES)
            assert p.survivors == tuple(sorted(t.address for t in world.trainers))
            assert p.aggregate is not None
        expected = np.mean([clip_vector(world.inputs[t.address], CLIP) for t in world.trainers],
                           axis=0)  # fmt: skip
        assert np.allclose(others[0].aggregate, expected, atol=TOLERANCE * 4)
        assert all(np.array_equal(p.aggregate, others[0].aggregate) for p in others)
    finally:
        for p in peers:
            p.stop()


def test_a_trainer_node_without_pubsub_refuses_a_secure_aggregation_task_in_one_line(
    world: World, tmp_path: Path
) -> None:
    # Prepare: the node's trainer exchanges shares over Kubo pubsub, which it was not given
    from node.peers.trainer import TrainerNode

    digits = load_dataset("digits")
    # Execute / Assert: one line naming the cause and the way out
    with pytest.raises(ConfigError, match=r"uses secure aggregation.*--ipfs-api"):
        TrainerNode(world.sessions[0], digits, Journal(tmp_path / "t.sqlite"))
