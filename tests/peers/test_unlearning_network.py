"""Unlearning over the network on real Anvil and Kubo: four trainers train a task, one withdraws
consent, and the remaining trainers — each an UnlearningNode with its own session, journal (its
own home) and its own data only — run the calibration rounds together through the chain and the
store; the committee's OracleNodes derive the expected digest themselves, re-validate the
recorded version and attest it. Then the same with a remaining trainer that never shows up (it
is dropped after the round's deadline) and a trainer node restarted mid-way (journal)."""

from __future__ import annotations

from pathlib import Path

import pytest
from marketkit import Member, market_with

from marketplace.chain.backend import connect
from marketplace.chain.clients import Phase, Role
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.versions_client import Reason, RetentionTerms, VersionsClient
from marketplace.fl import ModelSpec, TrainConfig, evaluate, load_dataset, partition, split_dataset
from marketplace.protocol.calibration import NetworkUnlearning
from marketplace.protocol.committee import accept_seat
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import TaskSession
from marketplace.storage.kubo import KuboStore
from node.peers.base import Peer
from node.peers.journal import Journal
from node.peers.oracle import OracleNode
from node.peers.trainer import TrainerNode
from node.peers.unlearner import UnlearningNode, calibration_step_name

TOKEN = 10**18
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)
TRAIN = TrainConfig(epochs=2, lr=0.1)  # calibration rounds of 1 epoch (half): FedEraser
ROUNDS, ROUND_SECONDS = 2, 600


@pytest.fixture(scope="module")
def world(kubo, module_chain, tmp_path_factory):
    w3 = connect(module_chain.rpc_url)
    requester = Identity.dev(1)
    trainers = [Identity.dev(i) for i in range(2, 6)]
    oracles = [Identity.dev(i) for i in range(6, 9)]
    peer = {"stake": 100 * TOKEN, "tokens": 1_000 * TOKEN}
    market = market_with(w3, Identity.dev(0).eth, [
        Member.of(requester, Role.REQUESTER, tokens=10_000 * TOKEN),
        *(Member.of(t, Role.TRAINER, **peer) for t in trainers),
        *(Member.of(o, Role.ORACLE, **peer) for o in oracles),
    ])  # fmt: skip
    splits = split_dataset(load_dataset("digits"), seed=0)
    parts = partition("iid", splits.train.y, num_clients=len(trainers), seed=0)
    data = {t.address: splits.train.subset(p) for t, p in zip(trainers, parts, strict=True)}
    yield {
        "market": market, "store": KuboStore(kubo.api_multiaddr), "requester": requester,
        "trainers": trainers, "oracles": oracles, "splits": splits, "data": data,
        "tmp": tmp_path_factory.mktemp("unlearning-homes"),
    }  # fmt: skip


def home(world, name: str, task_id: int) -> Path:
    """A node's own home directory (its journal lives there, as under `fedmarket --home`)."""
    path = world["tmp"] / f"task{task_id}-{name}"
    path.mkdir(exist_ok=True)
    return path


def session(world, task_id: int, who: Identity) -> TaskSession:
    return TaskSession.open(world["market"], world["store"], task_id, who)


def oracle_nodes(world, task_id: int) -> list[OracleNode]:
    return [
        OracleNode(
            session(world, task_id, o), Journal(home(world, o.address, task_id) / "j.sqlite")
        )
        for o in world["oracles"]
    ]


def unlearner(world, task_id: int, who: Identity) -> UnlearningNode:
    journal = Journal(home(world, who.address, task_id) / "unlearn.sqlite")
    return UnlearningNode(session(world, task_id, who), world["data"][who.address], journal)


def step_until(world, nodes: list[Peer], done, *, advance: bool, limit: int = 400) -> int:
    """Step ``nodes`` round-robin until ``done()``; returns how often the clock was moved (only
    allowed with ``advance``: past the deadline the waiting nodes name, or one round duration)."""
    market, moved = world["market"], 0
    for _ in range(limit):
        if done():
            return moved
        acted = False
        for n in nodes:
            acted |= not n.step().is_waiting
        if not acted:
            if not advance:
                raise AssertionError("every node waits and the clock may not move")
            info = market.task(nodes[0].session.task_id)
            target = info.claims_open_at if info.phase_enum == Phase.FINALIZED else 0
            target = max(target, info.phase_deadline, market.now() + ROUND_SECONDS)
            advance_chain_time(market.w3, max(1, target - market.now() + 1))
            moved += 1
    raise AssertionError("the nodes did not finish")


def trained_task(world, *, record: bool = True) -> tuple[int, VersionsClient, int]:
    """A task trained and scored by real nodes, registered for retention, its model recorded as
    version 1 and validated by 2 of 3 oracles (``record``; else no version: 0); returns (task id,
    versions client, version)."""
    market, store, splits = world["market"], world["store"], world["splits"]
    plan = TaskPlan(
        model=SPEC, train=TRAIN, budget=100 * TOKEN, rounds=ROUNDS,
        oracles=tuple(o.address for o in world["oracles"]), min_trainers=4, max_trainers=4,
        min_stake=10 * TOKEN, trainer_bond=TOKEN, oracle_slash=10 * TOKEN, join_window=600,
        round_duration=ROUND_SECONDS, commit_duration=600, reveal_duration=600,
        dispute_duration=600,
    )  # fmt: skip
    task_id, _ = create_task(
        market, store, world["requester"], plan, splits.validation.x, splits.validation.y
    )
    for o in world["oracles"]:
        accept_seat(market, o.eth, task_id)
    trainers = [
        TrainerNode(session(world, task_id, t), world["data"][t.address],
                    Journal(home(world, t.address, task_id) / "j.sqlite"))
        for t in world["trainers"]
    ]  # fmt: skip
    oracles = oracle_nodes(world, task_id)
    step_until(
        world, [*trainers, *oracles], advance=True,
        done=lambda: market.task(task_id).phase_enum == Phase.FINALIZED
        and market.now() >= market.task(task_id).claims_open_at,
    )  # fmt: skip
    versions = VersionsClient(market)
    versions.register_task(world["requester"].eth, task_id, RetentionTerms(
        retention_expiry=market.now() + 100_000, quorum=2, unlearn_window=100_000,
    ))  # fmt: skip
    (final,) = [
        e["args"] for e in market.events(market.market, "ModelPosted", filters={"taskId": task_id})
        if int(e["args"]["round"]) == ROUNDS + 1
    ]  # fmt: skip
    if not record:
        return task_id, versions, 0
    v1 = versions.record_version(
        world["requester"].eth, task_id, parent=0, reason=Reason.TRAINED, excludes=0,
        digest=bytes(final["digest"]), cid=str(final["cid"]),
    )  # fmt: skip
    for o in world["oracles"][:2]:
        versions.attest_version(o.eth, task_id, v1)
    return task_id, versions, v1


def test_remaining_trainers_unlearn_over_the_network_and_the_committee_attests(world) -> None:
    # Prepare: a trained task; the last trainer withdraws consent.
    task_id, versions, v1 = trained_task(world)
    trainers = world["trainers"]
    leaver, remaining = trainers[3], trainers[:3]
    withdrawal = versions.request_withdrawal(leaver.eth, task_id)
    nodes = [unlearner(world, task_id, t) for t in remaining]
    oracles = oracle_nodes(world, task_id)  # fresh objects: what `oracle run` starts with

    # Execute: no clock moves — every remaining trainer takes part in every round.
    step_until(world, [*nodes, *oracles], advance=False,
               done=lambda: versions.state(task_id).excluded_count == 1)  # fmt: skip

    # Assert: one plan, every round with all three; every peer derived the same digest.
    run = nodes[0]._run
    assert run is not None and run.plan.method == "federaser" and len(run.plan.steps) == ROUNDS
    for status in run.status():
        assert status.participants == tuple(sorted(t.address for t in remaining))
        assert leaver.address not in status.expected
    digests = {n._run.result().digest for n in nodes if n._run is not None}
    digests |= {o.unlearning._run.result().digest for o in oracles if o.unlearning._run}
    assert len(digests) == 1 and sum(o.unlearning._run is not None for o in oracles) >= 2
    (version,) = [v for v in versions.versions(task_id) if v.reason == Reason.UNLEARNED]
    assert version.digest in digests
    assert version.reason == Reason.UNLEARNED and version.parent == v1 and version.excludes == 1
    assert version.validated and version.attestations >= 2
    assert versions.is_honoured(task_id, withdrawal.number)
    assert versions.calibration_of(task_id, 1, 1, leaver.address) == bytes(32)
    test = world["splits"].test
    unlearned = evaluate(SPEC, run.result().weights, test.x, test.y).accuracy
    trained = evaluate(SPEC, nodes[0].session.global_weights(ROUNDS + 1), test.x, test.y).accuracy
    assert unlearned > 0.6 and unlearned > trained - 0.05  # 2 short rounds: ~0.7 either way
    # Every node's run is over for this task once the version is validated.
    assert all(n.step().is_done for n in [*nodes, *oracles])


def test_the_committee_records_and_attests_the_trained_model_as_the_unlearned_versions_parent(
    world,
) -> None:
    # Prepare: a trained task registered for retention with no version recorded (nobody ran a
    # step outside the CLI's nodes); the last trainer withdraws consent.
    task_id, versions, _ = trained_task(world, record=False)
    trainers = world["trainers"]
    assert versions.versions(task_id) == []
    versions.request_withdrawal(trainers[3].eth, task_id)
    nodes = [unlearner(world, task_id, t) for t in trainers[:3]]
    oracles = oracle_nodes(world, task_id)

    # Execute: the nodes alone, no clock moves.
    step_until(world, [*nodes, *oracles], advance=False,
               done=lambda: versions.state(task_id).excluded_count == 1)  # fmt: skip

    # Assert: version 1 is the final model, recorded by the first oracle in address order and
    # validated by the quorum; the unlearned version is its child.
    root, unlearned = versions.versions(task_id)
    final = world["market"].model_digest(task_id, ROUNDS + 1)
    first = min((o.address for o in world["oracles"]), key=str.lower)
    assert (root.reason, root.parent, root.excludes, root.digest) == (Reason.TRAINED, 0, 0, final)
    assert root.proposer == first and root.validated and root.attestations >= 2
    assert unlearned.reason == Reason.UNLEARNED and unlearned.parent == root.number
    assert unlearned.validated and unlearned.excludes == 1
    assert all(n.step().is_done for n in [*nodes, *oracles])


def test_an_offline_trainer_is_dropped_after_the_deadline_and_a_restart_resumes(world) -> None:
    # Prepare: trainer 3 withdraws; trainer 2 remains but never runs its node.
    task_id, versions, _ = trained_task(world)
    trainers = world["trainers"]
    leaver, offline = trainers[3], trainers[2]
    versions.request_withdrawal(leaver.eth, task_id)
    first, second = (unlearner(world, task_id, t) for t in trainers[:2])
    oracles = oracle_nodes(world, task_id)

    # Execute: the first node trains and publishes round 1 but crashes before its commit is
    # sent; restarted (a new object, same home), it commits the journaled update.
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("node killed before its commit")

    first.versions.commit_calibration = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.step()
    journaled = first.journal.get(task_id, 1, calibration_step_name(1))
    assert journaled is not None
    assert versions.calibration_of(task_id, 1, 1, first.me) == bytes(32)
    first = unlearner(world, task_id, trainers[0])
    assert first.step().action == "committed calibration round 1 of withdrawals 1..1"
    moved = step_until(world, [first, second, *oracles], advance=True,
                       done=lambda: first.step().is_done and second.step().is_done)  # fmt: skip

    # Assert: the offline trainer missed round 1's deadline and was dropped from round 2.
    assert moved >= 1
    assert first.journal.get(task_id, 1, calibration_step_name(1)) == journaled
    assert versions.calibration_of(task_id, 1, 1, first.me) == bytes.fromhex(journaled["digest"])
    run = first._run
    assert run is not None
    one, two = run.status()
    assert one.missing == (offline.address,) and one.closed_at == one.deadline
    assert offline.address not in two.expected and two.missing == ()
    assert versions.calibration_of(task_id, 1, 1, offline.address) == bytes(32)
    # Every peer — the two online trainers, the oracles, and the offline trainer when it comes
    # back — derives the same digest from the chain's record, and it is the recorded version.
    late = NetworkUnlearning.open(session(world, task_id, offline), versions)
    digests = {first._run.result().digest, second._run.result().digest, late.result().digest}
    digests |= {o.unlearning._run.result().digest for o in oracles if o.unlearning._run}
    assert len(digests) == 1
    (version,) = [v for v in versions.versions(task_id) if v.reason == Reason.UNLEARNED]
    assert version.digest in digests and version.validated and version.excludes == 1
    # An offline trainer that comes back finds the work done.
    assert unlearner(world, task_id, offline).step().is_done
