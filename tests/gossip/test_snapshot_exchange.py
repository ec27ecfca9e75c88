"""Asynchronous gossip averaging over two real, connected Kubo daemons: encrypted snapshots in the
store, signed announcements on pubsub, four honest peers in threads with no barrier.

Mixing must bring the peers' models together where training alone does not, and hostile members
(garbage, foreign, mis-digested, NaN snapshots) and bad announcements must be dropped and counted
while everyone carries on. A last test builds the nodes from a real task on Anvil through the
``open_gossip_averaging`` hook the CLI calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from marketkit import Member, market_with
from web3 import Web3

from marketplace.chain.clients import Role
from marketplace.chain.devnet import DEV_PRIVATE_KEYS, dev_x25519_private, dev_x25519_public
from marketplace.crypto.announce import (
    Announcement,
    SnapshotAnnouncement,
    sign_snapshot_announcement,
    verify_snapshot_announcement,
)
from marketplace.crypto.envelope import EnvelopeContext, seal
from marketplace.errors import ConfigError, SignatureError
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, partition, split_dataset
from marketplace.fl.data import DataSplits
from marketplace.fl.gossip_averaging import GossipAveragingPeer, StepReport, consensus_report
from marketplace.fl.models import build_model
from marketplace.fl.serialization import dump_weights
from marketplace.fl.weights import Weights, get_weights
from marketplace.gossip.snapshot_exchange import (
    GossipAveragingNode,
    open_gossip_averaging,
    snapshot_info,
)
from marketplace.gossip.topics import averaging_topic
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import TaskSession
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon
from marketplace.storage.pubsub import PubsubClient

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN = 31337
WAIT = 30.0  # generous bound for a condition to become true; never asserted as a duration
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)
LOCAL = TrainConfig(epochs=1, lr=0.1, batch_size=16)
HONEST = [1, 2, 3, 4]  # dev account indices of the four honest peers
GARBAGE, FOREIGN_TASK, FOREIGN_MODEL, WRONG_DIGEST, NAN = 5, 6, 7, 8, 10  # hostile members
OUTSIDER = 9  # signs correctly, never joined
MEMBER_IDS = [*HONEST, GARBAGE, FOREIGN_TASK, FOREIGN_MODEL, WRONG_DIGEST, NAN]


def account(i: int) -> LocalAccount:
    return Account.from_key(DEV_PRIVATE_KEYS[i])


MEMBERS = {account(i).address for i in MEMBER_IDS}
RECIPIENTS = {account(i).address: dev_x25519_public(i) for i in MEMBER_IDS}


def wait_until(condition: Callable[[], bool], describe: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {WAIT:.0f}s; state: {describe()}")
        time.sleep(0.05)


def meet(nodes: list[GossipAveragingNode]) -> None:
    """Start the nodes (each publishes version 0) and, until everyone has heard of everyone,
    re-announce: a version 0 published before the other daemon's subscription spread is missed.
    Start-up only; the algorithm itself never waits."""
    for node in nodes:
        node.start()
    deadline = time.monotonic() + WAIT
    while not all(len(n.candidates()) == len(nodes) - 1 for n in nodes):
        if time.monotonic() > deadline:
            pytest.fail(f"peers did not hear of each other: {[n.stats() for n in nodes]}")
        for node in nodes:
            node.reannounce()
        time.sleep(0.3)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)


@dataclass
class Net:
    task_id: int
    topic: str
    nodes: list[GossipAveragingNode]
    clients: list[object] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        return {n.address[:8]: (n.peer.version, n.stats()) for n in self.nodes}

    def run(self, rounds: int) -> dict[str, list[StepReport]]:
        """Every node steps ``rounds`` times on its own thread, no barrier between them."""
        reports: dict[str, list[StepReport]] = {n.address: [] for n in self.nodes}
        errors: list[BaseException] = []

        def go(node: GossipAveragingNode) -> None:
            try:
                node.run(rounds, on_step=reports[node.address].append)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        return reports

    def run_in_turn(self, rounds: int) -> None:
        """Every node steps in a fixed order, each step waiting until the others have heard of
        the new snapshot: what each step mixes no longer depends on thread timing, so the
        outcome is the same on every run (training is seeded, one torch thread)."""
        for _ in range(rounds):
            for node in self.nodes:
                node.step()
                others = [n for n in self.nodes if n is not node]
                wait_until(
                    lambda node=node, others=others: all(
                        o.candidates()[node.address].version == node.peer.version for o in others
                    ),
                    self.describe,
                )

    def models(self) -> list[Weights]:
        return [n.peer.weights for n in self.nodes]


@pytest.fixture
def make_net(
    kubo_pair: tuple[KuboDaemon, KuboDaemon], digits: DataSplits
) -> Iterator[Callable[..., Net]]:
    """Four honest nodes on a fresh task topic: two on daemon A, two on B; stopped after."""
    nets: list[Net] = []

    def build(*, k: int | None, init: str = "shared") -> Net:
        task_id = random.getrandbits(32)
        parts = partition("iid", digits.train.y, num_clients=len(HONEST), seed=0)
        net = Net(task_id, averaging_topic(CHAIN, MARKET, task_id), [])
        for n, (i, rows) in enumerate(zip(HONEST, parts, strict=True)):
            daemon = kubo_pair[n % 2]
            pubsub, store = PubsubClient(daemon.api_multiaddr), KuboStore(daemon.api_multiaddr)
            spec = SPEC if init == "shared" else dataclasses.replace(SPEC, seed=n)
            peer = GossipAveragingPeer(
                peer_id=account(i).address, model_spec=SPEC, dataset=digits.train.subset(rows),
                initial_weights=get_weights(build_model(spec)), train_config=LOCAL, k=k, seed=0,
            )  # fmt: skip
            node = GossipAveragingNode(
                peer=peer, pubsub=pubsub, store=store, chain_id=CHAIN, market_address=MARKET,
                task_id=task_id, identity_key=account(i), x25519_private=dev_x25519_private(i),
                recipients=RECIPIENTS, is_member=MEMBERS.__contains__,
            )  # fmt: skip
            net.nodes.append(node)
            net.clients += [pubsub, store]
        nets.append(net)
        meet(net.nodes)
        return net

    yield build
    for net in nets:
        for node in net.nodes:
            node.stop()
        for client in net.clients:
            client.close()  # type: ignore[attr-defined]


# --- the signed announcement ---------------------------------------------------------------
def test_snapshot_announcement_round_trips_and_refuses_replay_forgery_and_update_parsing() -> None:
    # Prepare
    digest = hashlib.sha256(b"snapshot").digest()
    cid = "bafkreiefh74bfmqjyrwqakrewx4r5scbwsvgwcxgrpm7qtpghnf5bzwwfm"
    ann = sign_snapshot_announcement(
        account(1), chain_id=CHAIN, task_id=7, version=3, cid=cid, digest=digest,
        num_samples=120, market_address=MARKET,
    )  # fmt: skip
    # Execute
    parsed = SnapshotAnnouncement.from_json(ann.to_json())
    # Assert
    assert (
        parsed == ann
        and snapshot_info(parsed).version == 3
        and snapshot_info(parsed).num_samples == 120
    )
    check = {"expected_chain_id": CHAIN, "expected_task_id": 7, "market_address": MARKET}
    assert verify_snapshot_announcement(parsed, **check) == account(1).address
    with pytest.raises(SignatureError, match="replay"):
        verify_snapshot_announcement(parsed, **{**check, "expected_task_id": 8})
    with pytest.raises(SignatureError, match="signed by"):
        verify_snapshot_announcement(dataclasses.replace(parsed, version=4), **check)
    with pytest.raises(SignatureError, match="malformed"):  # not an update announcement either
        Announcement.from_json(ann.to_json())


def test_a_node_must_be_its_peer_and_one_of_the_recipients(
    kubo_pair: tuple[KuboDaemon, KuboDaemon], digits: DataSplits
) -> None:
    api = kubo_pair[0].api_multiaddr
    peer = GossipAveragingPeer(
        peer_id="someone", model_spec=SPEC, dataset=digits.train.subset(np.arange(50)),
        initial_weights=get_weights(build_model(SPEC)),
    )  # fmt: skip
    options = dict(
        pubsub=PubsubClient(api), store=KuboStore(api), chain_id=CHAIN, market_address=MARKET,
        task_id=1, identity_key=account(1), x25519_private=dev_x25519_private(1),
        is_member=MEMBERS.__contains__,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="peer's id"):
        GossipAveragingNode(peer=peer, recipients=RECIPIENTS, **options)
    peer.peer_id = account(1).address
    with pytest.raises(ConfigError, match="recipients"):
        GossipAveragingNode(peer=peer, recipients={account(2).address: bytes(32)}, **options)


# --- mixing over the network ---------------------------------------------------------------
def test_mixing_over_kubo_shrinks_the_consensus_distance_where_training_alone_does_not(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: every peer starts from its own random model, so they disagree from the start
    mixing = make_net(k=2, init="per_peer")
    alone = make_net(k=0, init="per_peer")
    start = consensus_report(mixing.models()).relative
    # Execute: 4 local rounds per peer, in turn (deterministic inputs: see Net.run_in_turn)
    mixing.run_in_turn(4)
    alone.run_in_turn(4)
    # Assert
    mixed_end = consensus_report(mixing.models()).relative
    alone_end = consensus_report(alone.models()).relative
    assert start > 1.0 and alone_end > 0.8 * start, (start, alone_end)
    assert mixed_end < 0.5 * alone_end and mixed_end < 0.5 * start, (start, mixed_end, alone_end)
    everyone = mixing.nodes + alone.nodes
    wait_until(lambda: all(n.stats().settled for n in everyone), mixing.describe)
    for node in everyone:
        stats = node.stats()
        assert node.peer.version == 4 and stats.published == 5 and stats.publish_failed == 0
        assert stats.dropped == {} and stats.refused == {} and stats.accepted >= 3
    assert all(n.stats().fetched >= 2 and n.stats().snapshot_bytes_in > 0 for n in mixing.nodes)
    assert all(n.stats().fetched == 0 for n in alone.nodes)


# --- hostile input -------------------------------------------------------------------------
@dataclass
class Attacker:
    """Hostile members and bad messages, published through daemon B one at a time."""

    net: Net
    pubsub: PubsubClient
    store: KuboStore

    def put_and_announce(self, who: int, blob: bytes, *, digest: bytes | None = None) -> None:
        cid = self.store.put(blob)
        ann = self.sign(who, cid, digest or hashlib.sha256(blob).digest())
        self.send(ann.to_json(), lambda n: account(who).address in n.candidates())

    def sign(self, who: int, cid: str, digest: bytes, **over: int) -> SnapshotAnnouncement:
        fields = {"chain_id": CHAIN, "task_id": self.net.task_id, "version": 1, **over}
        return sign_snapshot_announcement(
            account(who), cid=cid, digest=digest, num_samples=100, market_address=MARKET,
            **fields,
        )  # fmt: skip

    def sealed(self, who: int, weights: Weights, *, task_id: int | None = None) -> bytes:
        context = EnvelopeContext(CHAIN, task_id or self.net.task_id, 1, account(who).address)
        return seal(dump_weights(weights), recipients=RECIPIENTS, context=context)

    def send(self, raw: bytes, arrived: Callable[[GossipAveragingNode], bool]) -> None:
        """Publish and wait until every honest node shows it arrived (Kubo's seqno validator
        can drop one of a burst, so one message is in flight at a time)."""
        self.pubsub.publish(self.net.topic, raw)
        wait_until(lambda: all(arrived(n) for n in self.net.nodes), self.net.describe)

    def drop(self, raw: bytes, reason: str) -> None:
        self.send(raw, lambda n: n.stats().dropped.get(reason, 0) >= 1)


def test_hostile_snapshots_and_announcements_are_dropped_counted_and_nobody_stops(
    make_net: Callable[..., Net], kubo_pair: tuple[KuboDaemon, KuboDaemon]
) -> None:
    # Prepare: honest nodes mix with every candidate (k = all), so every snapshot is tried
    net = make_net(k=None)
    api = kubo_pair[1].api_multiaddr
    bad = Attacker(net, PubsubClient(api), KuboStore(api))
    net.clients += [bad.pubsub, bad.store]
    good = get_weights(build_model(SPEC))
    nan = {k: v.clone() for k, v in good.items()}
    nan["net.0.weight"][0, 0] = float("nan")
    other_model = get_weights(build_model(dataclasses.replace(SPEC, hidden=(8,))))
    # Execute: members announce unusable snapshots ...
    bad.put_and_announce(GARBAGE, os.urandom(4096))
    bad.put_and_announce(FOREIGN_TASK, bad.sealed(FOREIGN_TASK, good, task_id=net.task_id + 1))
    bad.put_and_announce(FOREIGN_MODEL, bad.sealed(FOREIGN_MODEL, other_model))
    bad.put_and_announce(NAN, bad.sealed(NAN, nan))
    sealed = bad.sealed(WRONG_DIGEST, good)
    bad.put_and_announce(WRONG_DIGEST, sealed, digest=hashlib.sha256(b"other bytes").digest())
    # ... and bad announcements arrive
    cid = bad.store.put(bad.sealed(OUTSIDER, good))
    digest = hashlib.sha256(b"x").digest()
    bad.drop(b"[]", "malformed")
    bad.drop(b"{" + b" " * 3000 + b"}", "oversize")
    bad.drop(bad.sign(GARBAGE, cid, digest, chain_id=1).to_json(), "replay")
    forged = dataclasses.replace(bad.sign(OUTSIDER, cid, digest), sender=account(GARBAGE).address)
    bad.drop(forged.to_json(), "bad_signature")
    bad.drop(bad.sign(OUTSIDER, cid, digest).to_json(), "not_member")
    # ... then the honest nodes train and mix for two rounds
    reports = net.run(2)
    # Assert: each bad snapshot refused once per node, under its reason; honest mixing went on
    honest = {n.address for n in net.nodes}
    for node in net.nodes:
        stats = node.stats()
        assert stats.refused == {"bad_envelope": 2, "invalid_snapshot": 2, "fetch_failed": 1}
        assert stats.dropped == {
            "malformed": 1, "oversize": 1, "replay": 1, "bad_signature": 1, "not_member": 1,
        }  # fmt: skip
        first, second = reports[node.address]
        assert len(first.refused) == 5 and second.refused == {}
        for report in (first, second):
            assert {m.peer for m in report.mixed} == honest - {node.address}
        assert node.running and node.peer.version == 2
        assert all(bool(torch.isfinite(t).all()) for t in node.peer.weights.values())


# --- the hook the CLI calls ----------------------------------------------------------------
def test_open_gossip_averaging_builds_working_nodes_from_a_real_task(
    w3: Web3, chain_snapshot: None, kubo_pair: tuple[KuboDaemon, KuboDaemon], digits: DataSplits
) -> None:
    # Prepare: a task on Anvil with two joined trainers, one per daemon
    token = 10**18
    deployer, requester = Identity.dev(0), Identity.dev(11)
    trainers, oracles = [Identity.dev(12), Identity.dev(13)], [Identity.dev(14)]
    market = market_with(w3, deployer.eth, [
        Member.of(requester, Role.REQUESTER, tokens=1_000 * token),
        *(Member.of(t, Role.TRAINER, stake=10 * token, tokens=100 * token) for t in trainers),
        Member.of(oracles[0], Role.ORACLE, stake=10 * token, tokens=100 * token),
    ])  # fmt: skip
    plan = TaskPlan(
        model=SPEC, train=LOCAL, budget=10 * token, rounds=1, min_trainers=2, max_trainers=2,
        oracles=(oracles[0].address,), quorum_bps=10_000,
    )  # fmt: skip
    stores = [KuboStore(d.api_multiaddr) for d in kubo_pair]
    pubsubs = [PubsubClient(d.api_multiaddr) for d in kubo_pair]
    task_id, _ = create_task(
        market, stores[0], requester, plan, digits.validation.x, digits.validation.y
    )
    market.accept_seat(oracles[0].eth, task_id)  # consent: the committee takes its seat
    for t in trainers:
        market.join(t.eth, task_id)
    parts = partition("iid", digits.train.y, num_clients=2, seed=0)
    nodes = [
        open_gossip_averaging(
            TaskSession.open(market, store, task_id, t), pubsub, digits.train.subset(rows), k=1
        )
        for t, store, pubsub, rows in zip(trainers, stores, pubsubs, parts, strict=True)
    ]  # fmt: skip
    try:
        meet(nodes)
        # Execute
        for _ in range(2):
            for node in nodes:
                node.step()
        # Assert: each mixed the other's snapshot, sealed for the task's trainers only
        for node, other in ((nodes[0], nodes[1]), (nodes[1], nodes[0])):
            assert node.topic == averaging_topic(CHAIN, market.market.address, task_id)
            assert node.stats().fetched >= 1 and node.stats().refused == {}
            assert node.peer.version == 2 and other.address in node.candidates()
        assert set(nodes[0].recipients) == {t.address for t in trainers}
    finally:
        for node in nodes:
            node.stop()
        for client in (*stores, *pubsubs):
            client.close()
