"""TaskMarket.createTask: escrow, committee seating and stake locks, and every parameter check."""

from __future__ import annotations

import pytest
from chainkit import E18, Phase, Role, TaskSpec
from conftest import STAKE
from web3 import Web3


def test_create_task_escrows_the_budget_and_seats_the_committee(mkt):
    # Prepare
    requester = mkt.actors.requester
    before = mkt.balance(requester.address)
    spec = TaskSpec()
    # Execute
    receipt = mkt.chain.tx(mkt.fn.createTask(mkt.params(spec)), requester)
    # Assert
    (event,) = mkt.chain.events(mkt.market, receipt, "TaskCreated")
    task_id = event["taskId"]
    assert task_id == 1 and mkt.fn.taskCount().call() == 1
    assert (event["modelSpecCid"], event["initialModelCid"], event["configCid"]) == (
        "bafy-model-spec",
        "bafy-initial-model",
        "bafy-config",
    )
    assert mkt.balance(requester.address) == before - spec.budget
    assert mkt.balance(mkt.market.address) == spec.budget
    info = mkt.task(task_id)
    # Proposed, not seated: nobody's stake is touched until each oracle accepts.
    assert info["phase"] == Phase.FORMING and info["requester"] == requester.address
    assert info["committeeSize"] == 3 and info["committeeStake"] == 3 * spec.oracle_slash
    assert info["phaseDeadline"] == mkt.chain.now() + spec.accept_duration
    assert mkt.fn.modelDigest(task_id, 1).call() == Web3.keccak(text="initial model")
    assert mkt.fn.oracles(task_id).call() == [o.address for o in mkt.actors.oracles]
    for o in mkt.actors.oracles:
        assert mkt.fn.isOracle(task_id, o.address).call() is True
        assert mkt.fn.oracleWeight(task_id, o.address).call() == 0
        assert mkt.reserved(o.address) == 0
    mkt.accept_all(task_id)
    info = mkt.task(task_id)
    assert info["phase"] == Phase.OPEN and info["acceptedCount"] == 3
    # The join window is the one asked for at creation, counted from when the task opened (the
    # chain clock may move between building the params and the creating block: the Hardhat node).
    assert info["joinDeadline"] == mkt.chain.now() + info["joinDuration"]
    assert 0 < info["joinDuration"] <= spec.join_in
    for o in mkt.actors.oracles:
        assert mkt.fn.oracleWeight(task_id, o.address).call() == spec.oracle_slash
        assert mkt.reserved(o.address) == spec.oracle_slash


@pytest.mark.parametrize(
    ("change", "error", "args"),
    [
        ({"token": "0x" + "00" * 20}, "TaskMarketZeroAddress", ()),
        ({"budget": 0}, "TaskMarketZeroBudget", ()),
        ({"trainer_bond": 2**128}, "TaskMarketAmountTooLarge", (2**128,)),
        ({"rounds": 0}, "TaskMarketInvalidRounds", (0,)),
        ({"rounds": 1001}, "TaskMarketInvalidRounds", (1001,)),
        ({"min_trainers": 0}, "TaskMarketInvalidTrainerBounds", (0, 4)),
        ({"min_trainers": 5}, "TaskMarketInvalidTrainerBounds", (5, 4)),
        ({"min_reputation_ppm": 1_000_001}, "TaskMarketInvalidReputation", (1_000_001,)),
        ({"commit_duration": 0}, "TaskMarketZeroDuration", ()),
        ({"claim_duration": 0}, "TaskMarketZeroDuration", ()),
        ({"join_in": 0}, "TaskMarketDeadlineInPast", None),
        ({"claim_duration": 2**64 - 1}, "TaskMarketDurationTooLong", (2**64 - 1, 180 * 86400)),
        ({"round_duration": 2_592_001}, "TaskMarketDurationTooLong", (2_592_001, 2_592_000)),
        ({"min_stake": 0}, "TaskMarketStakeBelowMinimum", (0, E18)),
        ({"oracle_slash": E18 - 1}, "TaskMarketStakeBelowMinimum", (E18 - 1, E18)),
        ({"quorum_bps": 5000}, "TaskMarketInvalidQuorum", (5000,)),
        ({"quorum_bps": 10_001}, "TaskMarketInvalidQuorum", (10_001,)),
        ({"oracles": ()}, "TaskMarketInvalidCommitteeSize", (0,)),
    ],
)
def test_create_task_rejects_bad_parameters(mkt, change, error, args):
    spec = TaskSpec().with_(**change)
    params = mkt.params(spec)
    if args is None:  # the deadline is "now" at call time
        args = (params[14],)
    if args == "oracle0":
        args = (mkt.actors.oracles[0].address, STAKE, STAKE + 1)
    mkt.chain.expect_revert(mkt.fn.createTask(params), mkt.actors.requester, error, *args)


def test_create_task_rejects_zero_digests(mkt):
    params = list(mkt.params(TaskSpec()))
    params[4] = b"\x00" * 32
    mkt.chain.expect_revert(
        mkt.fn.createTask(tuple(params)), mkt.actors.requester, "TaskMarketZeroHash"
    )
    params = list(mkt.params(TaskSpec()))
    params[6] = b"\x00" * 32
    mkt.chain.expect_revert(
        mkt.fn.createTask(tuple(params)), mkt.actors.requester, "TaskMarketZeroHash"
    )


def test_committee_of_seventeen_is_rejected(mkt):
    spec = TaskSpec(oracles=tuple(mkt.actors.oracles[0].address for _ in range(17)))
    mkt.chain.expect_revert(
        mkt.fn.createTask(mkt.params(spec)),
        mkt.actors.requester,
        "TaskMarketInvalidCommitteeSize",
        17,
    )


def test_committee_members_must_be_distinct_staked_oracles_other_than_the_requester(mkt):
    o = [a.address for a in mkt.actors.oracles]
    trainer = mkt.actors.trainers[0].address
    outsider = mkt.actors.outsiders[0].address
    req = mkt.actors.requester
    cases = [
        ((o[0], o[1], o[0]), "TaskMarketDuplicateOracle", (o[0],)),
        ((o[0], req.address), "TaskMarketConflictOfInterest", (req.address,)),
        ((o[0], trainer), "TaskMarketWrongRole", (trainer, Role.ORACLE)),
        ((outsider,), "TaskMarketWrongRole", (outsider, Role.ORACLE)),
    ]
    for committee, error, args in cases:
        spec = TaskSpec(oracles=committee)
        mkt.chain.expect_revert(mkt.fn.createTask(mkt.params(spec)), req, error, *args)


def test_oracle_without_enough_free_stake_cannot_take_its_seat(mkt):
    who = mkt.actors.outsiders[0]
    mkt.chain.tx(mkt.registry.functions.register(Role.ORACLE, Web3.keccak(text="k"), 0), who)
    spec = TaskSpec(oracles=(who.address,))
    task_id = mkt.create(spec, accept=False)
    mkt.chain.expect_revert(
        mkt.fn.acceptSeat(task_id),
        who,
        "ParticipantRegistryInsufficientStake",
        who.address,
        0,
        spec.oracle_slash,
    )


def test_fee_on_transfer_token_is_rejected(mkt):
    fot = mkt.chain.deploy("FeeOnTransferToken", mkt.actors.deployer)
    req = mkt.actors.requester
    mkt.chain.tx(fot.functions.mint(req.address, 10_000 * E18), req)
    mkt.chain.tx(fot.functions.approve(mkt.market.address, 2**256 - 1), req)
    spec = TaskSpec(token=fot.address)
    mkt.chain.expect_revert(
        mkt.fn.createTask(mkt.params(spec)),
        req,
        "TaskMarketFeeOnTransfer",
        fot.address,
        spec.budget,
        spec.budget - spec.budget // 100,
    )


def test_unknown_task_is_reported_by_id(mkt):
    mkt.chain.expect_revert(mkt.fn.join(42), mkt.actors.trainers[0], "TaskMarketUnknownTask", 42)
    mkt.chain.expect_revert(mkt.fn.advance(0), mkt.actors.trainers[0], "TaskMarketUnknownTask", 0)
