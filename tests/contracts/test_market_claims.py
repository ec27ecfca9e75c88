"""TaskMarket: Merkle claims, flagged trainers, disputes, the arbiter, expiry sweep."""

from __future__ import annotations

from chainkit import (
    BURN,
    E18,
    Phase,
    Vote,
    even_rows,
    payout_tree,
    proof_bytes,
    root_bytes,
)
from conftest import STAKE


def _finalized(mkt, rows=None, spec=None, n=2):
    trainers = mkt.actors.trainers[:n]
    return mkt.finalized_task(trainers, rows or (lambda ts: even_rows(ts, 900 * E18)), spec)


def test_claim_pays_amount_plus_bond_and_updates_reputation(mkt):
    # Prepare
    task_id, tree = _finalized(mkt)
    t0 = mkt.actors.trainers[0]
    before = mkt.balance(t0.address)
    mkt.open_claims(task_id)
    # Execute: an outsider claims on t0's behalf (pull payment to the leaf's account)
    receipt = mkt.claim(task_id, tree, 0, who=mkt.actors.outsiders[0])
    # Assert
    event = mkt.chain.events(mkt.market, receipt, "Claimed")[0]
    assert (event["index"], event["account"], event["amount"], event["flags"]) == (
        0,
        t0.address,
        450 * E18,
        0,
    )
    assert mkt.balance(t0.address) == before + 450 * E18 + 10 * E18
    assert (
        mkt.fn.isClaimed(task_id, 0).call() is True and mkt.fn.isClaimed(task_id, 1).call() is False
    )
    # Half the full stake at risk (minStake 50 of 100): half the EMA step, 500k → 510k.
    assert mkt.registry.functions.reputationOf(t0.address).call() == 510_000
    info = mkt.task(task_id)
    assert (info["paid"], info["bondsHeld"]) == (450 * E18, 10 * E18)


def test_double_claim_and_forged_proofs_are_rejected(mkt):
    task_id, tree = _finalized(mkt)
    mkt.open_claims(task_id)
    mkt.claim(task_id, tree, 0)
    d = mkt.actors.deployer
    mkt.chain.expect_revert(
        mkt.claim_fn(task_id, tree, 0), d, "TaskMarketAlreadyClaimed", task_id, 0
    )
    e = tree.entries[1]
    proof = proof_bytes(tree, 1)
    forged = [
        mkt.fn.claim(task_id, e.index, e.account, e.amount + 1, e.score_ppm, e.flags, proof),
        mkt.fn.claim(task_id, e.index, d.address, e.amount, e.score_ppm, e.flags, proof),
        mkt.fn.claim(task_id, e.index, e.account, e.amount, e.score_ppm, e.flags, []),
        mkt.fn.claim(task_id, e.index, e.account, e.amount, 1_000_000, e.flags, proof),
    ]
    for fn in forged:
        mkt.chain.expect_revert(fn, d, "TaskMarketInvalidProof", task_id, 1)


def test_claim_of_a_flagged_trainer_slashes_it_and_burns_its_bond(mkt):
    # Prepare: t1 flagged as a poisoner with amount 0
    def rows(ts):
        return [(ts[0].address, 900 * E18, 1_000_000, 0), (ts[1].address, 0, 0, 2)]

    task_id, tree = _finalized(mkt, rows)
    t1 = mkt.actors.trainers[1]
    before, burned = mkt.balance(t1.address), mkt.balance(BURN)
    mkt.open_claims(task_id)
    # Execute
    receipt = mkt.claim(task_id, tree, 1)
    # Assert
    assert mkt.balance(t1.address) == before
    assert mkt.stake(t1.address) == STAKE - 50 * E18  # minStake
    assert mkt.balance(BURN) == burned + 50 * E18 + 10 * E18  # slashed stake + bond
    slashed = mkt.chain.events(mkt.registry, receipt, "Slashed")[0]
    assert slashed["evidence"] == root_bytes(tree)
    assert mkt.registry.functions.reputationOf(t1.address).call() == 450_000
    assert mkt.chain.events(mkt.market, receipt, "BondsBurned")[0]["amount"] == 10 * E18


def test_a_tree_paying_more_than_the_budget_stops_at_the_budget(mkt):
    def rows(ts):
        return [(ts[0].address, 600 * E18, 0, 0), (ts[1].address, 600 * E18, 0, 0)]

    task_id, tree = _finalized(mkt, rows)
    mkt.open_claims(task_id)
    mkt.claim(task_id, tree, 0)
    mkt.chain.expect_revert(
        mkt.claim_fn(task_id, tree, 1),
        mkt.actors.deployer,
        "TaskMarketBudgetExceeded",
        task_id,
        1200 * E18,
        1000 * E18,
    )


def test_claims_wait_for_the_dispute_window_and_close_at_the_deadline(mkt):
    task_id, tree = _finalized(mkt)
    info = mkt.task(task_id)
    d = mkt.actors.deployer
    mkt.chain.expect_revert(
        mkt.claim_fn(task_id, tree, 0), d, "TaskMarketTooEarly", task_id, info["claimsOpenAt"]
    )
    mkt.chain.expect_revert(
        mkt.fn.sweep(task_id), d, "TaskMarketTooEarly", task_id, info["claimDeadline"]
    )
    mkt.chain.warp_past(info["claimDeadline"])
    mkt.chain.expect_revert(
        mkt.claim_fn(task_id, tree, 0),
        d,
        "TaskMarketDeadlinePassed",
        task_id,
        info["claimDeadline"],
    )
    other = mkt.create()
    mkt.chain.expect_revert(
        mkt.claim_fn(other, tree, 0), d, "TaskMarketWrongPhase", other, Phase.OPEN
    )
    # Stored Forming until the first join or advance, but Open since the last seat: every
    # reader, sweep's error included, names the phase in force.
    assert mkt.task(other)["phase"] == Phase.OPEN
    mkt.chain.expect_revert(mkt.fn.sweep(other), d, "TaskMarketWrongPhase", other, Phase.OPEN)


def test_expiry_sweep_refunds_unclaimed_budget_and_burns_unclaimed_bonds(mkt):
    # Prepare: only t0 claims
    task_id, tree = _finalized(mkt)
    mkt.open_claims(task_id)
    mkt.claim(task_id, tree, 0)
    req_before, burned = mkt.balance(mkt.actors.requester.address), mkt.balance(BURN)
    # Execute
    mkt.chain.warp_past(mkt.task(task_id)["claimDeadline"])
    mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    # Assert
    assert mkt.balance(mkt.actors.requester.address) == req_before + 550 * E18
    assert mkt.balance(BURN) == burned + 10 * E18
    assert mkt.balance(mkt.market.address) == 0
    info = mkt.task(task_id)
    assert (info["phase"], info["refunded"], info["bondsHeld"]) == (Phase.CLOSED, 550 * E18, 0)
    mkt.chain.expect_revert(
        mkt.fn.sweep(task_id), mkt.actors.deployer, "TaskMarketWrongPhase", task_id, Phase.CLOSED
    )


def _finalized_with_minority(mkt):
    """Oracles 0 and 1 finalize tree A; oracle 2 revealed tree B (t1 paid more)."""
    trainers = mkt.actors.trainers[:2]
    task_id = mkt.create()
    mkt.start(task_id, trainers)
    mkt.train(task_id, trainers)
    tree_a = payout_tree(even_rows(trainers, 900 * E18), mkt.domain(task_id))
    tree_b = payout_tree(
        [
            (trainers[0].address, 100 * E18, 100_000, 0),
            (trainers[1].address, 800 * E18, 900_000, 0),
        ],
        mkt.domain(task_id),
    )
    a, b = root_bytes(tree_a), root_bytes(tree_b)
    mkt.score(
        task_id,
        {
            0: Vote(a, "r", b"\x01" * 32),
            1: Vote(a, "r", b"\x02" * 32),
            2: Vote(b, "r2", b"\x03" * 32),
        },
    )
    return task_id, tree_a, tree_b


def test_dispute_with_arbiter_change_returns_the_bond_and_pays_the_new_tree(mkt):
    # Prepare
    task_id, tree_a, tree_b = _finalized_with_minority(mkt)
    t1 = mkt.actors.trainers[1]
    before = mkt.balance(t1.address)
    # Execute
    receipt = mkt.chain.tx(mkt.fn.dispute(task_id), t1)
    assert mkt.chain.events(mkt.market, receipt, "DisputeRaised")[0]["bond"] == 20 * E18
    info = mkt.task(task_id)
    assert (info["phase"], info["disputer"]) == (Phase.DISPUTED, t1.address)
    mkt.chain.expect_revert(
        mkt.claim_fn(task_id, tree_a, 0), t1, "TaskMarketWrongPhase", task_id, Phase.DISPUTED
    )
    mkt.chain.tx(mkt.fn.resolveDispute(task_id, root_bytes(tree_b)), mkt.actors.arbiter)
    mkt.claim(task_id, tree_b, 1)
    # Assert: bond back, paid from tree B; tree A no longer claims
    assert mkt.balance(t1.address) == before + 800 * E18 + 10 * E18
    mkt.chain.expect_revert(
        mkt.claim_fn(task_id, tree_a, 0), t1, "TaskMarketInvalidProof", task_id, 0
    )
    # the two oracles that backed A are now slashable, and the dissenter is not
    o0, o2 = mkt.actors.oracles[0], mkt.actors.oracles[2]
    mkt.chain.tx(mkt.fn.slashOracle(task_id, o0.address), t1)
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, o2.address),
        t1,
        "TaskMarketOracleNotSlashable",
        task_id,
        o2.address,
    )
    # no second dispute: claims opened at once
    mkt.chain.expect_revert(
        mkt.fn.dispute(task_id),
        t1,
        "TaskMarketDeadlinePassed",
        task_id,
        mkt.task(task_id)["claimsOpenAt"],
    )


def test_dispute_upheld_root_burns_the_bond(mkt):
    task_id, tree_a, _ = _finalized_with_minority(mkt)
    o2 = mkt.actors.oracles[2]
    burned = mkt.balance(BURN)
    mkt.chain.tx(mkt.fn.dispute(task_id), o2)
    receipt = mkt.chain.tx(mkt.fn.resolveDispute(task_id, root_bytes(tree_a)), mkt.actors.arbiter)
    assert mkt.chain.events(mkt.market, receipt, "DisputeResolved")[0]["rootChanged"] is False
    assert mkt.balance(BURN) == burned + 20 * E18
    mkt.claim(task_id, tree_a, 0)


def test_arbiter_timeout_finalizes_the_current_root(mkt):
    # Prepare
    task_id, tree_a, tree_b = _finalized_with_minority(mkt)
    t0 = mkt.actors.trainers[0]
    mkt.chain.tx(mkt.fn.dispute(task_id), t0)
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id), t0, "TaskMarketTooEarly", task_id, deadline + 1
    )
    # Execute
    mkt.chain.warp_past(deadline)
    mkt.chain.expect_revert(
        mkt.fn.resolveDispute(task_id, root_bytes(tree_b)),
        mkt.actors.arbiter,
        "TaskMarketDeadlinePassed",
        task_id,
        deadline,
    )
    receipt = mkt.chain.tx(mkt.fn.advance(task_id), t0)
    # Assert
    event = mkt.chain.events(mkt.market, receipt, "DisputeResolved")[0]
    assert (event["root"], event["byArbiter"]) == (root_bytes(tree_a), False)
    info = mkt.task(task_id)
    assert info["phase"] == Phase.FINALIZED and info["claimsOpenAt"] > deadline
    mkt.claim(task_id, tree_a, 0)


def test_dispute_is_for_participants_within_the_window(mkt):
    task_id, _, _ = _finalized_with_minority(mkt)
    out = mkt.actors.outsiders[0]
    mkt.chain.expect_revert(
        mkt.fn.dispute(task_id), out, "TaskMarketNotParticipant", task_id, out.address
    )
    mkt.chain.expect_revert(
        mkt.fn.dispute(task_id),
        mkt.actors.requester,
        "TaskMarketNotParticipant",
        task_id,
        mkt.actors.requester.address,
    )
    opens = mkt.task(task_id)["claimsOpenAt"]
    mkt.open_claims(task_id)
    t0 = mkt.actors.trainers[0]
    mkt.chain.expect_revert(mkt.fn.dispute(task_id), t0, "TaskMarketDeadlinePassed", task_id, opens)
    other = mkt.create()
    mkt.chain.expect_revert(mkt.fn.dispute(other), t0, "TaskMarketWrongPhase", other, Phase.OPEN)
    mkt.chain.expect_revert(
        mkt.fn.resolveDispute(other, b"\x01" * 32),
        mkt.actors.arbiter,
        "TaskMarketWrongPhase",
        other,
        Phase.OPEN,
    )
