"""TaskMarket: oracle commit-reveal, quorum, slashing oracles, failed scoring."""

from __future__ import annotations

from dataclasses import replace

from chainkit import (
    BURN,
    E18,
    Phase,
    Vote,
    commitment,
    even_rows,
    payout_tree,
    root_bytes,
)
from conftest import STAKE

VOTE = Vote(root=b"\x11" * 32, report_cid="bafy-report", salt=b"\x01" * 32)
OTHER = Vote(root=b"\x22" * 32, report_cid="bafy-other", salt=b"\x02" * 32)


def _trained(mkt, spec=None):
    task_id = mkt.create(spec)
    trainers = mkt.actors.trainers[:2]
    mkt.start(task_id, trainers)
    mkt.train(task_id, trainers)
    return task_id


def test_commit_score_records_commitment_and_rejects_bad_calls(mkt):
    # Prepare
    task_id = mkt.create()
    o0 = mkt.actors.oracles[0]
    c = commitment(task_id, o0.address, VOTE)
    mkt.chain.expect_revert(
        mkt.fn.commitScore(task_id, c), o0, "TaskMarketWrongPhase", task_id, Phase.OPEN
    )
    task_id = _trained(mkt)
    c = commitment(task_id, o0.address, VOTE)
    out = mkt.actors.trainers[0]
    mkt.chain.expect_revert(
        mkt.fn.commitScore(task_id, c), out, "TaskMarketNotCommitteeMember", task_id, out.address
    )
    mkt.chain.expect_revert(mkt.fn.commitScore(task_id, b"\x00" * 32), o0, "TaskMarketZeroHash")
    # Execute
    receipt = mkt.chain.tx(mkt.fn.commitScore(task_id, c), o0)
    # Assert
    assert mkt.chain.events(mkt.market, receipt, "ScoreCommitted")[0]["commitment"] == c
    assert mkt.fn.commitmentOf(task_id, o0.address).call() == c
    mkt.chain.expect_revert(
        mkt.fn.commitScore(task_id, c), o0, "TaskMarketScoreAlreadyCommitted", task_id, o0.address
    )
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.warp_past(deadline)
    o1 = mkt.actors.oracles[1]
    mkt.chain.expect_revert(
        mkt.fn.commitScore(task_id, commitment(task_id, o1.address, VOTE)),
        o1,
        "TaskMarketDeadlinePassed",
        task_id,
        deadline,
    )


def test_reveal_checks_the_commitment_bound_to_the_oracle(mkt):
    # Prepare: o0 and o1 commit; o2 does not
    task_id = _trained(mkt)
    o0, o1, o2 = mkt.actors.oracles
    mkt.commit_votes(task_id, {0: VOTE, 1: OTHER})
    reveal = mkt.fn.revealScore
    mkt.chain.expect_revert(
        reveal(task_id, VOTE.root, VOTE.report_cid, VOTE.salt),
        o0,
        "TaskMarketWrongPhase",
        task_id,
        Phase.COMMITTING,
    )
    mkt.chain.warp_past(mkt.task(task_id)["phaseDeadline"])
    mkt.chain.tx(mkt.fn.advance(task_id), o0)
    # Execute / Assert: o1 cannot reveal o0's values (copying a commitment does not work)
    mkt.chain.expect_revert(
        reveal(task_id, VOTE.root, VOTE.report_cid, VOTE.salt),
        o1,
        "TaskMarketCommitmentMismatch",
        task_id,
        o1.address,
    )
    mkt.chain.expect_revert(
        reveal(task_id, VOTE.root, "bafy-tampered", VOTE.salt),
        o0,
        "TaskMarketCommitmentMismatch",
        task_id,
        o0.address,
    )
    mkt.chain.expect_revert(reveal(task_id, b"\x00" * 32, "x", VOTE.salt), o0, "TaskMarketZeroHash")
    mkt.chain.expect_revert(
        reveal(task_id, VOTE.root, VOTE.report_cid, VOTE.salt),
        o2,
        "TaskMarketNoCommitment",
        task_id,
        o2.address,
    )
    out = mkt.actors.outsiders[0]
    mkt.chain.expect_revert(
        reveal(task_id, VOTE.root, VOTE.report_cid, VOTE.salt),
        out,
        "TaskMarketNotCommitteeMember",
        task_id,
        out.address,
    )
    receipt = mkt.chain.tx(reveal(task_id, VOTE.root, VOTE.report_cid, VOTE.salt), o0)
    event = mkt.chain.events(mkt.market, receipt, "ScoreRevealed")[0]
    assert (event["oracle"], event["root"], event["reportCid"]) == (
        o0.address,
        VOTE.root,
        VOTE.report_cid,
    )
    assert mkt.fn.revealedRootOf(task_id, o0.address).call() == VOTE.root
    assert mkt.fn.commitmentOf(task_id, o0.address).call() == b"\x00" * 32
    assert mkt.fn.rootStake(task_id, VOTE.root).call() == 30 * E18  # the seat's reserved stake
    mkt.chain.expect_revert(
        reveal(task_id, VOTE.root, VOTE.report_cid, VOTE.salt),
        o0,
        "TaskMarketAlreadyRevealed",
        task_id,
        o0.address,
    )
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.warp_past(deadline)
    mkt.chain.expect_revert(
        reveal(task_id, OTHER.root, OTHER.report_cid, OTHER.salt),
        o1,
        "TaskMarketDeadlinePassed",
        task_id,
        deadline,
    )


def test_two_agreeing_oracles_finalize_and_the_dissenter_is_not_slashed(mkt):
    # Prepare
    task_id = _trained(mkt)
    votes = {0: VOTE, 1: replace(VOTE, salt=b"\x09" * 32), 2: OTHER}
    burned = mkt.balance(BURN)
    # Execute
    mkt.score(task_id, votes)
    # Assert
    info = mkt.task(task_id)
    assert info["phase"] == Phase.FINALIZED and info["payoutRoot"] == VOTE.root
    assert (info["leadingRoot"], info["leadingStake"]) == (VOTE.root, 2 * 30 * E18)
    dissenter, agreeing = mkt.actors.oracles[2], mkt.actors.oracles[0]
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, dissenter.address),
        agreeing,
        "TaskMarketTooEarly",
        task_id,
        info["claimsOpenAt"],
    )
    mkt.open_claims(task_id)
    # Dissent alone is not slashable: the dissenter revealed, and no arbiter ruled against it.
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, dissenter.address),
        agreeing,
        "TaskMarketOracleNotSlashable",
        task_id,
        dissenter.address,
    )
    assert mkt.stake(dissenter.address) == STAKE and mkt.balance(BURN) == burned
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, agreeing.address),
        dissenter,
        "TaskMarketOracleNotSlashable",
        task_id,
        agreeing.address,
    )
    out = mkt.actors.outsiders[0]
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, out.address),
        out,
        "TaskMarketNotCommitteeMember",
        task_id,
        out.address,
    )


def test_an_oracle_that_does_not_reveal_is_slashed(mkt):
    task_id = _trained(mkt)
    votes = {0: VOTE, 1: replace(VOTE, salt=b"\x09" * 32), 2: replace(VOTE, salt=b"\x08" * 32)}
    mkt.score(task_id, votes, reveal={0: votes[0], 1: votes[1]})
    assert mkt.task(task_id)["phase"] == Phase.FINALIZED
    mkt.open_claims(task_id)
    silent = mkt.actors.oracles[2]
    mkt.chain.tx(mkt.fn.slashOracle(task_id, silent.address), mkt.actors.outsiders[0])
    assert mkt.stake(silent.address) == STAKE - 30 * E18


def test_slash_oracle_before_scoring_is_the_wrong_phase(mkt):
    task_id = mkt.create()
    o = mkt.actors.oracles[0]
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, o.address), o, "TaskMarketWrongPhase", task_id, Phase.OPEN
    )


def test_commit_phase_ends_early_once_every_oracle_committed(mkt):
    task_id = _trained(mkt)
    mkt.commit_votes(task_id, {0: VOTE, 1: VOTE})
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id),
        mkt.actors.outsiders[0],
        "TaskMarketTooEarly",
        task_id,
        deadline + 1,
    )
    mkt.commit_votes(task_id, {2: VOTE})
    mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    assert mkt.task(task_id)["phase"] == Phase.REVEALING
    mkt.reveal_votes(task_id, {0: VOTE})
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id),
        mkt.actors.outsiders[0],
        "TaskMarketTooEarly",
        task_id,
        deadline + 1,
    )


def test_without_quorum_the_arbiter_picks_among_revealed_roots(mkt):
    # Prepare: three different roots, no quorum
    task_id = _trained(mkt)
    third = Vote(b"\x33" * 32, "bafy-third", b"\x03" * 32)
    mkt.score(task_id, {0: VOTE, 1: OTHER, 2: third})
    info = mkt.task(task_id)
    assert (
        info["phase"] == Phase.DISPUTED and info["payoutRoot"] == VOTE.root
    )  # plurality, first revealed
    arb = mkt.actors.arbiter
    # Execute / Assert
    mkt.chain.expect_revert(
        mkt.fn.resolveDispute(task_id, b"\x44" * 32),
        arb,
        "TaskMarketRootNotRevealed",
        task_id,
        b"\x44" * 32,
    )
    mkt.chain.expect_revert(
        mkt.fn.resolveDispute(task_id, OTHER.root),
        mkt.actors.requester,
        "TaskMarketNotArbiter",
        mkt.actors.requester.address,
    )
    receipt = mkt.chain.tx(mkt.fn.resolveDispute(task_id, OTHER.root), arb)
    event = mkt.chain.events(mkt.market, receipt, "DisputeResolved")[0]
    assert (event["root"], event["rootChanged"], event["byArbiter"]) == (OTHER.root, True, True)
    info = mkt.task(task_id)
    assert info["phase"] == Phase.FINALIZED and info["payoutRoot"] == OTHER.root
    assert info["claimsOpenAt"] == mkt.chain.now()
    # oracles 0 and 2 revealed other roots: both slashable at once (claims are open)
    mkt.chain.tx(mkt.fn.slashOracle(task_id, mkt.actors.oracles[0].address), arb)
    mkt.chain.tx(mkt.fn.slashOracle(task_id, mkt.actors.oracles[2].address), arb)
    mkt.chain.expect_revert(
        mkt.fn.resolveDispute(task_id, OTHER.root),
        arb,
        "TaskMarketWrongPhase",
        task_id,
        Phase.FINALIZED,
    )


def test_nothing_revealed_pays_trainers_a_fallback_and_every_oracle_is_slashable(mkt):
    # Prepare
    task_id = _trained(mkt)
    req_before = mkt.balance(mkt.actors.requester.address)
    # Execute: commit deadline passes with no commitment, then the empty reveal phase closes
    mkt.score(task_id, {})
    # Assert: the requester gets nothing back; trainers claim the budget by committed samples
    info = mkt.task(task_id)
    assert info["phase"] == Phase.CANCELLED and info["scoringFailed"] is True
    assert mkt.balance(mkt.actors.requester.address) == req_before
    for o in mkt.actors.oracles:
        mkt.chain.tx(mkt.fn.slashOracle(task_id, o.address), mkt.actors.outsiders[0])
        assert mkt.stake(o.address) == STAKE - 30 * E18
    t0 = mkt.actors.trainers[0]
    samples, amount = mkt.fn.fallbackOf(task_id, t0.address).call()
    assert amount == 1000 * E18 * samples // info["totalSamples"]
    before = mkt.balance(t0.address)
    mkt.chain.tx(mkt.fn.claimFallback(task_id), t0)
    assert mkt.balance(t0.address) == before + amount + 10 * E18
    mkt.chain.expect_revert(
        mkt.fn.withdrawBond(task_id), t0, "TaskMarketWrongPhase", task_id, Phase.CANCELLED
    )


def test_full_life_happy_path(mkt):
    # Prepare
    trainers = mkt.actors.trainers[:3]
    before = {t.address: mkt.balance(t.address) for t in trainers}
    req_before = mkt.balance(mkt.actors.requester.address)
    # Execute: create, join, two rounds, oracles agree, claims, sweep
    task_id, tree = mkt.finalized_task(trainers, lambda ts: even_rows(ts, 900 * E18))
    mkt.open_claims(task_id)
    for i in range(len(trainers)):
        mkt.claim(task_id, tree, i, who=trainers[i])
    mkt.chain.warp_past(mkt.task(task_id)["claimDeadline"])
    receipt = mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    # Assert: each trainer got 300 (its bond came back); the requester got the 100 left
    for t in trainers:
        assert mkt.balance(t.address) == before[t.address] + 300 * E18
        assert (
            mkt.registry.functions.reputationOf(t.address).call()
            == (500_000 * 9 + 600_000 * 1) // 10  # half the full stake at risk: half the step
        )
    assert mkt.balance(mkt.actors.requester.address) == req_before - 1000 * E18 + 100 * E18
    swept = mkt.chain.events(mkt.market, receipt, "TaskSwept")[0]
    assert (swept["refund"], swept["bondsBurned"]) == (100 * E18, 0)
    assert mkt.task(task_id)["phase"] == Phase.CLOSED
    assert mkt.balance(mkt.market.address) == 0
    assert root_bytes(tree) == mkt.task(task_id)["payoutRoot"]
    assert payout_tree(even_rows(trainers, 900 * E18), mkt.domain(task_id)).root == tree.root
