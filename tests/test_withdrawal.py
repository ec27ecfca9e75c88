"""A consent withdrawal on real Anvil and Kubo: a task trained by real TrainerNodes, its model
recorded and validated, one owner withdraws, a remaining trainer derives and records the unlearned
version from the store and the chain's record, the committee re-validates it, and after the
deadline only the new version is sellable. A second peer (an oracle, other keys) derives the same
digest independently."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.deploy import deploy_marketplace
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.versions_client import Reason, RetentionTerms, VersionsClient
from marketplace.errors import TransactionRevertedError
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, split_dataset
from marketplace.fl.seeding import derive_seed
from marketplace.fl.train import evaluate, train_local
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import TaskSession
from marketplace.protocol.withdrawal import derive_unlearned, record_unlearned, revalidate
from marketplace.storage.kubo import KuboStore
from marketplace.unlearning import FedEraserConfig
from node.peers.journal import Journal
from node.peers.trainer import TrainerNode

TOKEN = 10**18
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)
TRAIN = TrainConfig(epochs=2, lr=0.1)
ROUNDS, WINDOW = 4, 600
CALIBRATION = FedEraserConfig(interval=1, calibration_epochs=1)


@pytest.fixture(scope="module")
def world(kubo, module_chain, tmp_path_factory):
    node = module_chain  # the module's own devnet (FEDMARKET_TEST_CHAIN)
    w3 = connect(node.rpc_url)
    deployer = Identity.dev(0)
    market = Marketplace(w3, deploy_marketplace(w3, deployer.eth, unbonding_delay=60))
    requester = Identity.dev(1)
    trainers = [Identity.dev(i) for i in range(2, 5)]
    oracles = [Identity.dev(i) for i in range(6, 9)]
    market.mint(deployer.eth, requester.address, 10_000 * TOKEN)
    market.register(requester.eth, Role.REQUESTER, requester.x25519_public, 0)
    for p, role in [*((t, Role.TRAINER) for t in trainers), *((o, Role.ORACLE) for o in oracles)]:
        market.mint(deployer.eth, p.address, 1_000 * TOKEN)
        market.register(p.eth, role, p.x25519_public, 100 * TOKEN)
    store = KuboStore(kubo.api_multiaddr)
    splits = split_dataset(load_dataset("digits"), seed=0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(splits.train)), 3)
    data = {t.address: splits.train.subset(p) for t, p in zip(trainers, parts, strict=True)}
    plan = TaskPlan(
        model=SPEC, train=TRAIN, budget=100 * TOKEN, rounds=ROUNDS,
        oracles=tuple(o.address for o in oracles), min_trainers=3, max_trainers=3,
        min_stake=10 * TOKEN, join_window=600, round_duration=600, commit_duration=600,
        reveal_duration=600, dispute_duration=600,
    )  # fmt: skip
    task_id, _ = create_task(
        market, store, requester, plan, splits.validation.x, splits.validation.y
    )
    for o in oracles:  # consent: the committee takes its seats (the task opens after)
        market.accept_seat(o.eth, task_id)
    tmp = tmp_path_factory.mktemp("peers")
    nodes = [
        TrainerNode(
            TaskSession.open(market, store, task_id, t),
            data[t.address],
            Journal(tmp / f"{t.address}.sqlite"),
        )
        for t in trainers
    ]
    _train_to_the_end(market, task_id, nodes)
    yield {
        "market": market, "store": store, "task": task_id, "requester": requester,
        "trainers": trainers, "oracles": oracles, "data": data, "splits": splits,
    }  # fmt: skip
    store.close()


def _train_to_the_end(market: Marketplace, task_id: int, nodes: list[TrainerNode]) -> None:
    """Step the trainers until training is over and the final model is posted."""
    for _ in range(300):
        info = market.task(task_id)
        if info.phase_enum not in (Phase.OPEN, Phase.TRAINING) and market.model_digest(
            task_id, ROUNDS + 1
        ) != bytes(32):
            return
        acted = False
        for n in nodes:
            acted |= not n.step().is_waiting
        if not acted:
            now = int(market.w3.eth.get_block("latest")["timestamp"])
            advance_chain_time(market.w3, max(1, int(info.phase_deadline) - now + 1))
    raise AssertionError("training did not finish")


def _local_trainer(data):  # type: ignore[no-untyped-def]
    def train(trainer: str, round_: int, start: Weights, epochs: int) -> ClientUpdate:
        config = replace(TRAIN, epochs=epochs, seed=derive_seed(0, "unlearn", trainer, round_))
        result = train_local(SPEC, start, data[trainer], config)
        return ClientUpdate(trainer, result.delta, result.num_samples)

    return train


def test_withdrawal_is_unlearned_revalidated_and_only_the_new_version_sells(world) -> None:
    # Prepare: the trained model recorded as version 1 and validated by 2 of 3 oracles.
    market, task = world["market"], world["task"]
    versions = VersionsClient(market)
    requester, trainers, oracles = world["requester"], world["trainers"], world["oracles"]
    now = int(market.w3.eth.get_block("latest")["timestamp"])
    versions.register_task(requester.eth, task, RetentionTerms(
        retention_expiry=now + 100_000, quorum=2, unlearn_window=WINDOW,
        deposit=10 * TOKEN, miss_penalty=5 * TOKEN,
    ))  # fmt: skip
    (final,) = [
        e["args"] for e in market.events(market.market, "ModelPosted", filters={"taskId": task})
        if int(e["args"]["round"]) == ROUNDS + 1
    ]  # fmt: skip
    v1 = versions.record_version(
        requester.eth, task, parent=0, reason=Reason.TRAINED, excludes=0,
        digest=bytes(final["digest"]), cid=str(final["cid"]),
    )  # fmt: skip
    for o in oracles[:2]:
        versions.attest_version(o.eth, task, v1)
    leaver = trainers[2]
    withdrawal = versions.request_withdrawal(leaver.eth, task)
    train = _local_trainer(world["data"])
    store = world["store"]

    # Execute: a remaining trainer derives and records; the committee re-validates.
    peer = TaskSession.open(market, store, task, trainers[0])
    recorded = record_unlearned(peer, versions, trainers[0].eth, train=train, config=CALIBRATION)
    sessions = [TaskSession.open(market, store, task, o) for o in oracles[:2]]
    x_val, y_val = world["splits"].validation.x, world["splits"].validation.y
    accuracies = [
        revalidate(s, versions, o.eth, recorded.number, x_val, y_val)
        for s, o in zip(sessions, oracles[:2], strict=True)
    ]
    independent = derive_unlearned(
        sessions[0], withdrawn=[leaver.address], train=train, config=CALIBRATION
    )

    # Assert
    v2 = versions.version(task, recorded.number)
    assert recorded.result.method == "federaser" and recorded.excludes == 1
    assert v2.parent == v1 and v2.reason == Reason.UNLEARNED and v2.validated
    assert v2.digest == recorded.result.digest == independent.digest  # every honest peer agrees
    test = world["splits"].test
    assert evaluate(SPEC, recorded.result.weights, test.x, test.y).accuracy > 0.8
    assert min(accuracies) > 0.8
    assert versions.is_sellable(task, v1) and versions.is_sellable(task, v2.number)
    now = int(market.w3.eth.get_block("latest")["timestamp"])
    advance_chain_time(market.w3, withdrawal.deadline - now + 1)
    assert not versions.is_sellable(task, v1)  # trained with the withdrawn data
    assert versions.is_sellable(task, v2.number)
    assert versions.is_honoured(task, withdrawal.number)
    with pytest.raises(TransactionRevertedError, match="ModelVersionsDeadlineMet"):
        versions.claim_missed_deadline(leaver.eth, task)
