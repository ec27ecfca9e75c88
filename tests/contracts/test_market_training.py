"""TaskMarket: joining, rounds of update commitments, posted models, advancing, cancelling."""

from __future__ import annotations

from chainkit import E18, Phase, Role, TaskSpec
from web3 import Web3

DIGEST = bytes(Web3.keccak(text="update"))


def test_join_pulls_the_bond_and_counts_the_trainer(mkt):
    # Prepare
    task_id = mkt.create()
    trainer = mkt.actors.trainers[0]
    before = mkt.balance(trainer.address)
    # Execute
    receipt = mkt.chain.tx(mkt.fn.join(task_id), trainer)
    # Assert
    assert mkt.chain.events(mkt.market, receipt, "TrainerJoined")[0]["bond"] == 10 * E18
    assert mkt.balance(trainer.address) == before - 10 * E18
    assert mkt.fn.isTrainer(task_id, trainer.address).call() is True
    assert mkt.fn.trainerCount(task_id).call() == 1
    assert mkt.task(task_id)["bondsHeld"] == 10 * E18


def test_join_rejects_conflicts_duplicates_and_unqualified_trainers(mkt):
    # Prepare: a 1-trainer task with a reputation floor; an unstaked trainer
    task_id = mkt.create(TaskSpec(min_trainers=1, max_trainers=1))
    join = mkt.fn.join(task_id)
    req, oracle, t0, t1 = mkt.actors.requester, mkt.actors.oracles[0], *mkt.actors.trainers[:2]
    poor = mkt.actors.outsiders[0]
    mkt.chain.tx(mkt.registry.functions.register(Role.TRAINER, Web3.keccak(text="p"), E18), poor)
    # Execute / Assert
    mkt.chain.expect_revert(join, req, "TaskMarketConflictOfInterest", req.address)
    mkt.chain.expect_revert(join, oracle, "TaskMarketConflictOfInterest", oracle.address)
    outsider = mkt.actors.outsiders[1]
    mkt.chain.expect_revert(join, outsider, "TaskMarketWrongRole", outsider.address, Role.TRAINER)
    mkt.chain.expect_revert(join, poor, "TaskMarketStakeTooLow", poor.address, E18, 50 * E18)
    mkt.chain.tx(join, t0)
    mkt.chain.expect_revert(join, t0, "TaskMarketAlreadyJoined", task_id, t0.address)
    mkt.chain.expect_revert(join, t1, "TaskMarketTaskFull", task_id, 1)


def test_join_requires_the_minimum_reputation(mkt):
    task_id = mkt.create(TaskSpec(min_reputation_ppm=600_000))
    t0 = mkt.actors.trainers[0]
    mkt.chain.expect_revert(
        mkt.fn.join(task_id), t0, "TaskMarketReputationTooLow", t0.address, 500_000, 600_000
    )


def test_join_closes_at_the_deadline_and_after_open(mkt):
    task_id = mkt.create()
    deadline = mkt.task(task_id)["joinDeadline"]
    mkt.chain.warp_past(deadline)
    t0 = mkt.actors.trainers[0]
    mkt.chain.expect_revert(mkt.fn.join(task_id), t0, "TaskMarketDeadlinePassed", task_id, deadline)
    other = mkt.create()
    mkt.start(other, mkt.actors.trainers[:4])
    mkt.chain.expect_revert(
        mkt.fn.join(other), mkt.actors.trainers[4], "TaskMarketWrongPhase", other, Phase.TRAINING
    )


def test_advance_starts_training_early_when_full_and_waits_otherwise(mkt):
    task_id = mkt.create(TaskSpec(max_trainers=2))
    deadline = mkt.task(task_id)["joinDeadline"]
    mkt.join(task_id, mkt.actors.trainers[:1])
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id),
        mkt.actors.outsiders[0],
        "TaskMarketTooEarly",
        task_id,
        deadline + 1,
    )
    mkt.join(task_id, mkt.actors.trainers[1:2])
    receipt = mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    event = mkt.chain.events(mkt.market, receipt, "PhaseAdvanced")[0]
    assert (event["from"], event["to"], event["round"]) == (Phase.OPEN, Phase.TRAINING, 1)
    info = mkt.task(task_id)
    assert info["phaseDeadline"] == mkt.chain.now() + 1000


def test_too_few_trainers_cancels_and_refunds_then_bonds_are_withdrawn_once(mkt):
    # Prepare
    task_id = mkt.create(TaskSpec(min_trainers=3))
    t0 = mkt.actors.trainers[0]
    mkt.join(task_id, [t0])
    req_before = mkt.balance(mkt.actors.requester.address)
    # Execute
    mkt.chain.warp_past(mkt.task(task_id)["joinDeadline"])
    receipt = mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    # Assert
    assert mkt.task(task_id)["phase"] == Phase.CANCELLED
    assert mkt.chain.events(mkt.market, receipt, "Refunded")[0]["amount"] == 1000 * E18
    assert mkt.balance(mkt.actors.requester.address) == req_before + 1000 * E18
    t0_before = mkt.balance(t0.address)
    mkt.chain.tx(mkt.fn.withdrawBond(task_id), t0)
    assert mkt.balance(t0.address) == t0_before + 10 * E18
    mkt.chain.expect_revert(
        mkt.fn.withdrawBond(task_id), t0, "TaskMarketNoBond", task_id, t0.address
    )
    assert mkt.balance(mkt.market.address) == 0
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id), t0, "TaskMarketWrongPhase", task_id, Phase.CANCELLED
    )


def test_withdraw_bond_only_from_cancelled_tasks(mkt):
    task_id = mkt.create()
    t0 = mkt.actors.trainers[0]
    mkt.join(task_id, [t0])
    mkt.chain.expect_revert(
        mkt.fn.withdrawBond(task_id), t0, "TaskMarketWrongPhase", task_id, Phase.OPEN
    )


def test_requester_cancels_only_while_open(mkt):
    task_id = mkt.create()
    req = mkt.actors.requester
    mkt.chain.expect_revert(
        mkt.fn.cancel(task_id),
        mkt.actors.outsiders[0],
        "TaskMarketNotRequester",
        task_id,
        mkt.actors.outsiders[0].address,
    )
    before = mkt.balance(req.address)
    mkt.chain.tx(mkt.fn.cancel(task_id), req)
    assert mkt.balance(req.address) == before + 1000 * E18
    assert mkt.task(task_id)["phase"] == Phase.CANCELLED
    mkt.chain.expect_revert(
        mkt.fn.cancel(task_id), req, "TaskMarketWrongPhase", task_id, Phase.CANCELLED
    )


def test_commit_update_records_digest_and_samples_once_per_round(mkt):
    # Prepare
    task_id = mkt.create()
    t0, t1 = mkt.actors.trainers[:2]
    mkt.start(task_id, [t0, t1])
    # Execute
    receipt = mkt.chain.tx(mkt.fn.commitUpdate(task_id, 1, "bafy-u", DIGEST, 123), t0)
    # Assert
    event = mkt.chain.events(mkt.market, receipt, "UpdateCommitted")[0]
    assert (event["round"], event["trainer"], event["cid"], event["numSamples"]) == (
        1,
        t0.address,
        "bafy-u",
        123,
    )
    assert tuple(mkt.fn.update(task_id, 1, t0.address).call()) == (DIGEST, 123)
    assert mkt.fn.updateCount(task_id, 1).call() == 1
    mkt.chain.expect_revert(
        mkt.fn.commitUpdate(task_id, 1, "bafy-u", DIGEST, 1),
        t0,
        "TaskMarketUpdateAlreadyCommitted",
        task_id,
        1,
        t0.address,
    )


def test_commit_update_rejects_bad_calls(mkt):
    task_id = mkt.create()
    t0, t1 = mkt.actors.trainers[:2]
    f = mkt.fn.commitUpdate
    mkt.chain.expect_revert(
        f(task_id, 1, "c", DIGEST, 1), t0, "TaskMarketWrongPhase", task_id, Phase.OPEN
    )
    mkt.start(task_id, [t0, t1])
    out = mkt.actors.trainers[2]
    mkt.chain.expect_revert(
        f(task_id, 2, "c", DIGEST, 1), t0, "TaskMarketWrongRound", task_id, 2, 1
    )
    mkt.chain.expect_revert(
        f(task_id, 1, "c", DIGEST, 1), out, "TaskMarketNotJoined", task_id, out.address
    )
    mkt.chain.expect_revert(f(task_id, 1, "c", b"\x00" * 32, 1), t0, "TaskMarketZeroHash")
    mkt.chain.expect_revert(f(task_id, 1, "c", DIGEST, 0), t0, "TaskMarketZeroSamples")
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.warp_past(deadline)
    mkt.chain.expect_revert(
        f(task_id, 1, "c", DIGEST, 1), t0, "TaskMarketDeadlinePassed", task_id, deadline
    )


def test_rounds_advance_when_everyone_committed_or_the_deadline_passed(mkt):
    # Prepare
    task_id = mkt.create(TaskSpec(rounds=3))
    t0, t1 = mkt.actors.trainers[:2]
    mkt.start(task_id, [t0, t1])
    # Execute: round 1 everyone commits; round 2 only t0 commits, then the deadline passes
    mkt.chain.tx(mkt.fn.commitUpdate(task_id, 1, "a", DIGEST, 1), t0)
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id), t0, "TaskMarketTooEarly", task_id, deadline + 1
    )
    mkt.chain.tx(mkt.fn.commitUpdate(task_id, 1, "b", DIGEST, 1), t1)
    mkt.chain.tx(mkt.fn.advance(task_id), t0)
    mkt.chain.tx(mkt.fn.commitUpdate(task_id, 2, "a", DIGEST, 1), t0)
    mkt.chain.warp_past(mkt.task(task_id)["phaseDeadline"])
    mkt.chain.tx(mkt.fn.advance(task_id), t0)
    # Assert
    info = mkt.task(task_id)
    assert (info["phase"], info["currentRound"], info["roundCommits"]) == (Phase.TRAINING, 3, 0)
    assert [mkt.fn.updateCount(task_id, r).call() for r in (1, 2, 3)] == [2, 1, 0]
    mkt.train(task_id, [t0, t1])
    assert mkt.task(task_id)["phase"] == Phase.COMMITTING


def test_post_model_first_post_wins_and_mismatch_is_evidence(mkt):
    # Prepare
    task_id = mkt.create()
    t0, t1 = mkt.actors.trainers[:2]
    mkt.start(task_id, [t0, t1])
    good, bad = bytes(Web3.keccak(text="agg")), bytes(Web3.keccak(text="other"))
    mkt.chain.expect_revert(
        mkt.fn.postModel(task_id, 2, "m", good), t0, "TaskMarketRoundNotEnded", task_id, 2
    )
    mkt.train(task_id, [t0, t1])
    # Execute
    posted = mkt.chain.tx(mkt.fn.postModel(task_id, 2, "m", good), t0)
    mismatch = mkt.chain.tx(mkt.fn.postModel(task_id, 2, "m2", bad), t1)
    same = mkt.chain.tx(mkt.fn.postModel(task_id, 2, "m", good), t1)
    final = mkt.chain.tx(mkt.fn.postModel(task_id, 3, "final", bad), t1)
    # Assert
    assert mkt.chain.events(mkt.market, posted, "ModelPosted")[0]["digest"] == good
    event = mkt.chain.events(mkt.market, mismatch, "ModelMismatchReported")[0]
    assert (event["round"], event["reporter"], event["digest"]) == (2, t1.address, bad)
    assert mkt.chain.events(mkt.market, same, "ModelMismatchReported") == []
    assert mkt.chain.events(mkt.market, final, "ModelPosted")[0]["round"] == 3
    assert mkt.fn.modelDigest(task_id, 2).call() == good
    assert mkt.fn.modelDigest(task_id, 3).call() == bad


def test_post_model_rejects_bad_rounds_outsiders_and_zero_digest(mkt):
    task_id = mkt.create()
    t0, t1 = mkt.actors.trainers[:2]
    mkt.start(task_id, [t0, t1])
    mkt.train(task_id, [t0, t1])
    d = bytes(Web3.keccak(text="agg"))
    for r in (0, 1, 4):
        mkt.chain.expect_revert(
            mkt.fn.postModel(task_id, r, "m", d), t0, "TaskMarketInvalidModelRound", task_id, r
        )
    out = mkt.actors.outsiders[0]
    mkt.chain.expect_revert(
        mkt.fn.postModel(task_id, 2, "m", d), out, "TaskMarketNotJoined", task_id, out.address
    )
    mkt.chain.expect_revert(
        mkt.fn.postModel(task_id, 2, "m", b"\x00" * 32), t0, "TaskMarketZeroHash"
    )
