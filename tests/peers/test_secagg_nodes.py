"""The node's peers run a secure-aggregation task end to end on a real Anvil and two real Kubo
daemons: four :class:`TrainerNode` and one :class:`OracleNode`, stepped in turn in this process
(sharing nothing in memory: each has its own session, store client, pubsub client and journal).

One trainer "crashes" right after committing its round-1 masked input (its node object and
subscriptions are dropped, its journal file kept) and is rebuilt over the same journal only once
the three others have unmasked round 1 and posted round 2's model. Checked: round 2's model is
exactly the initial model plus the mean of the four survivors' plaintexts (bit for bit), the
rebuilt trainer never commits twice and resends nothing different, the oracle's own recompute
matches, and the task finalizes with all four paid.

The multi-process version (``node run`` / ``oracle run`` subprocesses, SIGKILL) is
tests/integration/test_secagg_multiprocess.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from marketkit import Member, market_with
from web3 import Web3

from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.crypto.secagg import SecAggTerms
from marketplace.errors import FedMarketError
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, partition, split_dataset
from marketplace.fl.serialization import dump_weights
from marketplace.fl.weights import flatten, unflatten
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.secagg_committee import committee_round
from marketplace.protocol.session import TaskSession
from marketplace.resilience import is_transient
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon
from marketplace.storage.pubsub import PubsubClient
from node.peers.base import Peer
from node.peers.journal import Journal
from node.peers.oracle import OracleNode
from node.peers.trainer import TrainerNode

SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)
LOCAL = TrainConfig(epochs=1, lr=0.1, batch_size=16)
TOKEN = 10**18
BUDGET = 10 * TOKEN
ROUNDS = 2
VICTIM = 2
WAIT = 600.0  # a bound that only catches a hang


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


class Nodes:
    """A 2-round secure-aggregation task, four trainer nodes and a one-oracle committee."""

    def __init__(
        self,
        w3: Web3,
        daemons: tuple[KuboDaemon, KuboDaemon],
        tmp: Path,
        *,
        post_grace: float = 2.0,
    ) -> None:
        deployer, requester = Identity.dev(0), Identity.dev(11)
        self.trainers = [Identity.dev(i) for i in (12, 13, 14, 15)]
        self.oracle = Identity.dev(16)
        self.market: Marketplace = market_with(w3, deployer.eth, [
            Member.of(requester, Role.REQUESTER, tokens=1_000 * TOKEN),
            *(Member.of(t, Role.TRAINER, stake=10 * TOKEN, tokens=100 * TOKEN)
              for t in self.trainers),
            Member.of(self.oracle, Role.ORACLE, stake=10 * TOKEN, tokens=100 * TOKEN),
        ])  # fmt: skip
        self.daemons, self.tmp, self.post_grace = daemons, tmp, post_grace
        self.clients: list[KuboStore | PubsubClient] = []
        digits = split_dataset(
            load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0
        )
        plan = TaskPlan(
            model=SPEC, train=LOCAL, budget=BUDGET, rounds=ROUNDS, min_trainers=4, max_trainers=4,
            oracles=(self.oracle.address,), quorum_bps=10_000, secagg=SecAggTerms(clip_norm=2.0),
        )  # fmt: skip
        self.task_id, _ = create_task(
            self.market, self._store(0), requester, plan, digits.validation.x, digits.validation.y
        )
        shards = partition("iid", digits.train.y, num_clients=4, seed=0)
        self.data = [digits.train.subset(rows) for rows in shards]
        self.balances = {t.address: self.market.balance_of(t.address) for t in self.trainers}
        self.nodes: list[Peer | None] = [self.trainer(k) for k in range(4)]
        self.nodes.append(
            OracleNode(
                TaskSession.open(self.market, self._store(0), self.task_id, self.oracle),
                Journal(tmp / "oracle.sqlite"),
            )
        )

    def _store(self, k: int) -> KuboStore:
        store = KuboStore(self.daemons[k % 2].api_multiaddr)
        self.clients.append(store)
        return store

    def trainer(self, k: int) -> TrainerNode:
        """Trainer ``k``'s node over its journal file (a fresh one, or a restart's)."""
        pubsub = PubsubClient(self.daemons[k % 2].api_multiaddr)
        self.clients.append(pubsub)
        session = TaskSession.open(self.market, self._store(k), self.task_id, self.trainers[k])
        return TrainerNode(
            session, self.data[k], Journal(self.tmp / f"trainer{k}.sqlite"), pubsub=pubsub,
            post_grace=self.post_grace,
        )  # fmt: skip

    def seat(self, round_: int) -> int:
        """The index of the trainer in the seat that posts round ``round_``'s model (all four
        join; seats go by address, as in ``TrainerNode._my_turn``)."""
        by_address = sorted(
            range(4), key=lambda k: Web3.to_checksum_address(self.trainers[k].address)
        )
        return by_address[(round_ - 2) % 4]

    def step_until(self, done: Callable[[], bool], *, skip: Collection[int] = ()) -> None:
        """Step every live node not in ``skip`` in turn until ``done()`` (or fail at ``WAIT``)."""
        deadline = time.monotonic() + WAIT
        while not done():
            assert time.monotonic() < deadline, f"stuck in {self.market.task(self.task_id)}"
            for k, node in enumerate(self.nodes):
                if node is None or k in skip:
                    continue
                try:
                    node.step()
                except FedMarketError as exc:
                    if not is_transient(exc):
                        raise
            time.sleep(0.05)

    def posted(self, round_: int) -> list[str]:
        """Who posted round ``round_``'s model (the first post counts)."""
        events = self.market.events(
            self.market.market, "ModelPosted", filters={"taskId": self.task_id}
        )
        return [e["args"]["poster"] for e in events if int(e["args"]["round"]) == round_]

    def crash(self, k: int) -> None:
        node = self.nodes[k]
        assert isinstance(node, TrainerNode) and node.secagg is not None
        node.secagg.close()
        self.nodes[k] = None

    def close(self) -> None:
        for node in self.nodes:
            if isinstance(node, TrainerNode) and node.secagg is not None:
                node.secagg.close()
        for client in self.clients:
            client.close()


@pytest.fixture
def nodes(
    w3: Web3, chain_snapshot: None, kubo_pair: tuple[KuboDaemon, KuboDaemon], tmp_path: Path
) -> Iterator[Nodes]:
    built = Nodes(w3, kubo_pair, tmp_path)
    yield built
    built.close()


def test_trainer_nodes_run_secure_aggregation_through_a_crash_and_the_task_pays(
    nodes: Nodes,
) -> None:
    # Execute: step every live node in turn; crash the victim after its round-1 commit, rebuild
    # it once round 2's model is on-chain; skip the dispute window on the devnet clock
    market, tid = nodes.market, nodes.task_id
    victim = nodes.trainers[VICTIM]
    done: set[int] = set()
    crashed = restarted = False
    deadline = time.monotonic() + WAIT
    while len(done) < len(nodes.nodes):
        assert time.monotonic() < deadline, f"task stuck in {market.task(tid).phase_enum}"
        for k, node in enumerate(nodes.nodes):
            if node is None or k in done:
                continue
            try:
                if node.step().is_done:
                    done.add(k)
            except FedMarketError as exc:
                if not is_transient(exc):
                    raise
        if not crashed and market.update_of(tid, 1, victim.address)[0] != bytes(32):
            journal = nodes.nodes[VICTIM].journal  # type: ignore[union-attr]
            nodes.crash(VICTIM)
            crashed = True
            # Crashed mid-round: its shares and masked input are out, its unmasking is not
            steps = {e.step for e in journal.entries(tid) if e.round == 1}
            assert {"published", "secagg_secrets", "secagg_message_shares"} <= steps, steps
            assert "secagg_message_unmask" not in steps
        if crashed and not restarted and market.model_digest(tid, 2) != bytes(32):
            nodes.nodes[VICTIM] = nodes.trainer(VICTIM)
            restarted = True
        info = market.task(tid)
        if info.phase_enum == Phase.FINALIZED and market.now() < info.claims_open_at:
            market.increase_time(info.claims_open_at - market.now() + 1)
        time.sleep(0.05)

    # Assert: round 2's model is the initial one plus the exact mean of the four plaintexts
    oracle = TaskSession.open(market, nodes._store(1), tid, nodes.oracle)
    opened = committee_round(oracle, 1)
    assert opened.survivors == tuple(sorted(t.address for t in nodes.trainers))
    assert opened.reproducible and opened.mean is not None
    initial = oracle.global_weights(1)
    model2 = unflatten(flatten(initial) + opened.mean, initial)
    assert market.model_digest(tid, 2) == hashlib.sha256(dump_weights(model2)).digest()
    assert market.model_digest(tid, ROUNDS + 1) != bytes(32)
    assert market.events(market.market, "ModelMismatchReported", filters={"taskId": tid}) == []
    # ...and differs from the mean of three (the victim's input is in the sum, its mask is not)
    without = np.mean([i.vector for a, i in opened.inputs.items() if a != victim.address], axis=0)
    assert not np.allclose(opened.mean, without)

    # Assert: one commit per trainer per round, the victim's included
    commits = market.events(market.market, "UpdateCommitted", filters={"taskId": tid})
    pairs = sorted((e["args"]["trainer"], int(e["args"]["round"])) for e in commits)
    assert pairs == sorted((t.address, r) for t in nodes.trainers for r in (1, 2))

    # Assert: finalized, nobody flagged, every trainer paid out of the whole budget
    assert market.task(tid).phase_enum in (Phase.FINALIZED, Phase.CLOSED)
    paid = {t.address: market.balance_of(t.address) - nodes.balances[t.address]
            for t in nodes.trainers}  # fmt: skip
    assert all(v > 0 for v in paid.values()), paid
    assert sum(paid.values()) <= BUDGET
    for node in nodes.nodes[:4]:
        assert isinstance(node, TrainerNode) and node.claimed is not None
        assert node.claimed["flags"] == 0


def test_the_others_post_the_next_model_while_the_seated_poster_stalls_before_sharing(
    w3: Web3, chain_snapshot: None, kubo_pair: tuple[KuboDaemon, KuboDaemon], tmp_path: Path
) -> None:
    # Set up: the trainer whose seat posts round 2's model stalls after its round-1 commit
    nodes = Nodes(w3, kubo_pair, tmp_path, post_grace=2.0)
    try:
        market, tid = nodes.market, nodes.task_id
        seat = nodes.seat(2)
        stalled = nodes.trainers[seat].address
        nodes.step_until(lambda: market.update_of(tid, 1, stalled)[0] != bytes(32))

        # Execute: the three others unmask round 1 and wait in round 2 for the stalled one's shares
        nodes.step_until(lambda: market.model_digest(tid, 2) != bytes(32), skip={seat})

        # Assert: one of them posted round 2's model after the grace (not the seat holder)
        posters = nodes.posted(2)
        assert posters and posters[0] != stalled, posters

        # Execute: the stalled trainer wakes up and the task finishes round 2
        nodes.step_until(lambda: market.model_digest(tid, ROUNDS + 1) != bytes(32))

        # Assert: the woken trainer's own sum gives the posted model; nobody reported a mismatch
        assert market.events(market.market, "ModelMismatchReported", filters={"taskId": tid}) == []
    finally:
        nodes.close()


def test_a_restarted_seated_poster_that_missed_every_unmasking_still_sums_and_posts(
    w3: Web3, chain_snapshot: None, kubo_pair: tuple[KuboDaemon, KuboDaemon], tmp_path: Path
) -> None:
    # Set up: only the seat holder posts (an endless grace); it crashes after its round-1 commit
    nodes = Nodes(w3, kubo_pair, tmp_path, post_grace=1e9)
    try:
        market, tid = nodes.market, nodes.task_id
        seat = nodes.seat(2)
        seated = nodes.trainers[seat].address
        nodes.step_until(lambda: market.update_of(tid, 1, seated)[0] != bytes(32))
        nodes.crash(seat)

        # Execute: the three others unmask and sum round 1 while it is down (it hears nothing)...
        others = [n for k, n in enumerate(nodes.nodes[:4]) if k != seat]
        nodes.step_until(
            lambda: all(isinstance(n, TrainerNode) and n.session.has_round_mean(1) for n in others)
        )
        # ...then it restarts on its journal with a fresh subscription
        nodes.nodes[seat] = nodes.trainer(seat)
        nodes.step_until(lambda: market.model_digest(tid, 2) != bytes(32))

        # Assert: it summed from the unmaskings the others kept re-publishing, and posted round 2's
        # model; every other trainer's own sum gives the same digest
        assert nodes.posted(2) == [seated]
        for n in others:
            assert isinstance(n, TrainerNode)
            assert n.session.model_digest(2) == market.model_digest(tid, 2)
    finally:
        nodes.close()
