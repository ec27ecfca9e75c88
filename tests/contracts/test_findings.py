"""Regression tests for the audit findings F1-F11 of issue 10: each replays the attack with real
transactions on the devnet (Anvil, or the Hardhat node) and asserts that it now fails with the
named custom error, or that the funds end where they belong. F12 (CLI help examples) lives in
tests/test_cli_help_examples.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chainkit import (
    BURN,
    E18,
    VALIDATION_MISMATCH,
    Outcome,
    Phase,
    Role,
    TaskSpec,
    Vote,
    even_rows,
    payout_tree,
    proof_bytes,
    root_bytes,
)
from conftest import STAKE, UNBONDING_DELAY
from eth_account import Account
from web3 import Web3

from marketplace.chain.clients import SeatSignature
from marketplace.valuation.merkle import LeafDomain

# The order of secp256k1: a signature's s must be at most half of it (EIP-2).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

VOTE_A = Vote(bytes(Web3.keccak(text="root A")), "bafy-a", b"\x01" * 32)
VOTE_B = Vote(bytes(Web3.keccak(text="root B")), "bafy-b", b"\x02" * 32)


def _trained(mkt, spec=None, trainers=None):
    trainers = trainers or mkt.actors.trainers[:2]
    task_id = mkt.create(spec)
    mkt.start(task_id, trainers)
    mkt.train(task_id, trainers)
    return task_id


def _worthless_token(mkt, who):
    token = mkt.chain.deploy("RewardToken", who, "Junk", "JNK", who.address)
    mkt.chain.tx(token.functions.mint(who.address, 10**30), who)
    mkt.chain.tx(token.functions.approve(mkt.market.address, 2**256 - 1), who)
    return token


# --- F1: naming oracles locks nothing; an unaccepted committee cancels with a full refund -------


def test_f1_stranger_naming_oracles_reserves_nothing_and_cancels_at_once(mkt):
    # Prepare: an outsider names the registered oracles, with a worthless token, 1 wei budget and
    # the longest claim window it may ask for
    attacker = mkt.actors.outsiders[0]
    junk = _worthless_token(mkt, attacker)
    spec = TaskSpec(token=junk.address, budget=1, trainer_bond=E18, dispute_bond=0)
    spec = spec.with_(claim_duration=180 * 86400)
    # Execute
    task_id = mkt.create(spec, requester=attacker, accept=False)
    mkt.chain.tx(mkt.fn.cancel(task_id), attacker)
    # Assert: the oracles' stake was never reserved and unbonds at once
    for o in mkt.actors.oracles:
        assert mkt.reserved(o.address) == 0
        mkt.chain.tx(mkt.registry.functions.requestUnstake(STAKE), o)
    # A schedule beyond the protocol caps is refused outright
    mkt.chain.expect_revert(
        mkt.fn.createTask(mkt.params(spec.with_(claim_duration=2**63))),
        attacker,
        "TaskMarketDurationTooLong",
        2**63,
        180 * 86400,
    )


def test_f1_unaccepted_committee_lets_anyone_cancel_with_full_refund_and_release(mkt):
    # Prepare: two of three oracles accept, the third never does
    req = mkt.actors.requester
    spec = TaskSpec(requester_deposit=5 * E18)
    before = mkt.balance(req.address)
    task_id = mkt.create(spec, accept=False)
    o0, o1, o2 = mkt.actors.oracles
    mkt.chain.tx(mkt.fn.acceptSeat(task_id), o0)
    mkt.chain.tx(mkt.fn.acceptSeat(task_id), o1)
    mkt.chain.expect_revert(
        mkt.fn.acceptSeat(task_id), o0, "TaskMarketSeatAlreadyAccepted", task_id, o0.address
    )
    mkt.chain.expect_revert(
        mkt.fn.join(task_id), mkt.actors.trainers[0], "TaskMarketWrongPhase", task_id, Phase.FORMING
    )
    assert mkt.reserved(o0.address) == spec.oracle_slash
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id), o0, "TaskMarketTooEarly", task_id, deadline + 1
    )
    # Execute: the acceptance window passes; anyone cancels
    mkt.chain.warp_past(deadline)
    mkt.chain.expect_revert(
        mkt.fn.acceptSeat(task_id), o2, "TaskMarketDeadlinePassed", task_id, deadline
    )
    mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    # Assert
    assert mkt.task(task_id)["phase"] == Phase.CANCELLED
    assert mkt.balance(req.address) == before
    assert mkt.reserved(o0.address) == 0 and mkt.reserved(o1.address) == 0


def _seat_sig(mkt, task_id, oracle, deadline=None, *, signer=None):
    """``oracle``'s SeatSignature tuple for ``acceptSeatsFor`` (signed by ``signer``, default
    the oracle itself: another key forges it)."""
    deadline = mkt.chain.now() + 600 if deadline is None else deadline
    digest = mkt.fn.seatAcceptanceDigest(task_id, oracle.address, deadline).call()
    raw = bytes(Account._sign_hash(digest, (signer or oracle).key).signature)
    return SeatSignature(task_id, oracle.address, deadline, raw).contract_args()


def test_f1_seats_accepted_by_eip712_signatures_the_requester_batches(mkt):
    # Prepare: two Forming tasks with the same committee
    req = mkt.actors.requester
    task_id, other = mkt.create(accept=False), mkt.create(accept=False)
    o0, o1, o2 = mkt.actors.oracles
    good0 = _seat_sig(mkt, task_id, o0)
    accept = mkt.fn.acceptSeatsFor
    # Execute / Assert: every bad batch reverts with a named error, and seats nobody
    mkt.chain.expect_revert(accept(task_id, []), req, "TaskMarketNoSignatures", task_id)
    forged = _seat_sig(mkt, task_id, o1, signer=o2)
    mkt.chain.expect_revert(
        accept(task_id, [forged]), req, "TaskMarketInvalidSignature", task_id, o1.address
    )
    # One bad signature refuses the whole batch, the valid one before it included.
    mkt.chain.expect_revert(
        accept(task_id, [good0, forged]), req, "TaskMarketInvalidSignature", task_id, o1.address
    )
    past = mkt.chain.now() - 1
    mkt.chain.expect_revert(
        accept(task_id, [good0, _seat_sig(mkt, task_id, o1, past)]),
        req,
        "TaskMarketSignatureExpired",
        past,
    )
    # Signed for the other task: its digest names that task, so the signer does not match.
    mkt.chain.expect_revert(
        accept(task_id, [_seat_sig(mkt, other, o1)]),
        req,
        "TaskMarketInvalidSignature",
        task_id,
        o1.address,
    )
    # A compact s above n/2 (the malleable twin of a valid signature) is refused.
    oracle, deadline, r, _vs = good0
    high = (SECP256K1_N // 2 + 1).to_bytes(32, "big")
    mkt.chain.expect_revert(
        accept(task_id, [(oracle, deadline, r, high)]),
        req,
        "TaskMarketInvalidSignature",
        task_id,
        o0.address,
    )
    mkt.chain.expect_revert(
        accept(task_id, [good0, good0]),
        req,
        "TaskMarketSeatAlreadyAccepted",
        task_id,
        o0.address,
    )
    assert all(mkt.reserved(o.address) == 0 for o in (o0, o1, o2))
    # Execute: one signature alone, then the other two in one batch (the last seat)
    mkt.chain.tx(accept(task_id, [good0]), req)
    assert mkt.fn.hasAccepted(task_id, o0.address).call() is True
    assert mkt.reserved(o0.address) == TaskSpec().oracle_slash
    mkt.chain.expect_revert(
        accept(task_id, [good0]), req, "TaskMarketSeatAlreadyAccepted", task_id, o0.address
    )
    receipt = mkt.chain.tx(
        accept(task_id, [_seat_sig(mkt, task_id, o1), _seat_sig(mkt, task_id, o2)]), req
    )
    # Assert: a SeatAccepted per seat, the task opened once, every seat reserved
    seated = mkt.chain.events(mkt.market, receipt, "SeatAccepted")
    assert [e["oracle"] for e in seated] == [o1.address, o2.address]
    (opened,) = mkt.chain.events(mkt.market, receipt, "PhaseAdvanced")
    assert (opened["from"], opened["to"]) == (Phase.FORMING, Phase.OPEN)
    assert mkt.task(task_id)["phase"] == Phase.OPEN
    assert all(mkt.reserved(o.address) == TaskSpec().oracle_slash for o in (o0, o1, o2))
    # The other task's committee seated in one transaction, after the first task's signature
    # for it was refused; nothing left to take afterwards
    whole = [_seat_sig(mkt, other, o) for o in (o0, o1, o2)]
    receipt = mkt.chain.tx(accept(other, whole), req)
    assert len(mkt.chain.events(mkt.market, receipt, "SeatAccepted")) == 3
    assert mkt.task(other)["phase"] == Phase.OPEN
    mkt.chain.expect_revert(
        accept(other, whole[:1]), req, "TaskMarketSeatAlreadyAccepted", other, o0.address
    )


def test_seat_signature_text_round_trips_and_refuses_malformed_strings():
    # Prepare: a low-s signature (65 bytes) of an arbitrary digest
    oracle = Account.from_key(b"\x05" * 32)
    raw = bytes(Account._sign_hash(b"\x11" * 32, oracle.key).signature)
    seat = SeatSignature(7, oracle.address, 1_900_000_000, raw)
    # Execute
    text = seat.to_text()
    back = SeatSignature.from_text(text)
    # Assert: one shell word; the compact form round-trips to the same contract arguments
    assert text.startswith(f"7:{oracle.address}:1900000000:0x") and " " not in text
    assert back.contract_args() == seat.contract_args()
    a = oracle.address
    bad = ("", "7:0xabc:1:0x00", f"x:{a}:1:0x{'11' * 64}", f"7:{a}:1:0x{'11' * 63}",
           f"7:{a}:1:0x{'zz' * 64}")  # fmt: skip
    for text in bad:
        with pytest.raises(ValueError):
            SeatSignature.from_text(text)


# --- F2: dissent alone is not slashable; a root the arbiter rules against is -------------------


def test_f2_colluding_majority_cannot_slash_honest_dissenters(mkt):
    # Prepare: o0 and o1 agree on A (quorum), o2 reveals B
    task_id = _trained(mkt)
    mkt.score(task_id, {0: VOTE_A, 1: replace(VOTE_A, salt=b"\x03" * 32), 2: VOTE_B})
    assert mkt.task(task_id)["phase"] == Phase.FINALIZED
    mkt.open_claims(task_id)
    # Execute / Assert
    honest = mkt.actors.oracles[2]
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, honest.address),
        mkt.actors.requester,
        "TaskMarketOracleNotSlashable",
        task_id,
        honest.address,
    )
    assert mkt.stake(honest.address) == STAKE


def test_f2_root_the_arbiter_rules_against_is_slashable(mkt):
    # Prepare: no quorum at 6,700 bps with a 2-1 split: the arbiter decides
    task_id = _trained(mkt, TaskSpec(quorum_bps=6700))
    mkt.score(task_id, {0: VOTE_A, 1: replace(VOTE_A, salt=b"\x03" * 32), 2: VOTE_B})
    assert mkt.task(task_id)["phase"] == Phase.DISPUTED
    # Execute
    mkt.chain.tx(mkt.fn.resolveDispute(task_id, VOTE_A.root), mkt.actors.arbiter)
    # Assert: the oracle whose root was ruled against is slashable (once), the others are not
    loser = mkt.actors.oracles[2]
    mkt.chain.tx(mkt.fn.slashOracle(task_id, loser.address), mkt.actors.outsiders[0])
    assert mkt.stake(loser.address) == STAKE - TaskSpec().oracle_slash
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, loser.address),
        mkt.actors.outsiders[0],
        "TaskMarketOracleAlreadySlashed",
        task_id,
        loser.address,
    )
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, mkt.actors.oracles[0].address),
        loser,
        "TaskMarketOracleNotSlashable",
        task_id,
        mkt.actors.oracles[0].address,
    )


# --- F3: failed scoring pays trainers, not the requester; a mismatched validation set costs it --


def test_f3_failed_scoring_pays_trainers_pro_rata_by_samples(mkt):
    # Prepare
    trainers = mkt.actors.trainers[:2]
    req = mkt.actors.requester
    task_id = _trained(mkt)
    req_before = mkt.balance(req.address)
    # Execute: nobody reveals
    mkt.score(task_id, {})
    # Assert
    info = mkt.task(task_id)
    assert info["outcome"] == Outcome.FAILED and mkt.balance(req.address) == req_before
    paid = 0
    for t in trainers:
        samples, amount = mkt.fn.fallbackOf(task_id, t.address).call()
        assert amount == 1000 * E18 * samples // info["totalSamples"]
        mkt.chain.tx(mkt.fn.claimFallback(task_id), t)
        paid += amount
        assert mkt.reserved(t.address) == 0
        mkt.chain.expect_revert(
            mkt.fn.claimFallback(task_id), t, "TaskMarketNothingToClaim", task_id, t.address
        )
    assert paid >= 1000 * E18 - 2  # rounding dust only
    mkt.chain.warp_past(mkt.task(task_id)["claimDeadline"])
    mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    assert mkt.balance(req.address) == req_before + (1000 * E18 - paid)


def test_f3_validation_mismatch_pays_the_deposit_to_the_provers(mkt):
    # Prepare: a requester deposit; the committee finds the sealed validation set mismatched
    spec = TaskSpec(requester_deposit=90 * E18)
    task_id = _trained(mkt, spec)
    mismatch = [Vote(VALIDATION_MISMATCH, "bafy-proof", bytes([i + 5]) * 32) for i in range(3)]
    # Execute
    mkt.score(task_id, {0: mismatch[0], 1: mismatch[1], 2: mismatch[2]})
    # Assert: the requester pays; oracles share the deposit, trainers the budget
    info = mkt.task(task_id)
    assert info["outcome"] == Outcome.VALIDATION_MISMATCH
    for o in mkt.actors.oracles:
        before = mkt.balance(o.address)
        mkt.chain.tx(mkt.fn.claimDeposit(task_id), o)
        assert mkt.balance(o.address) == before + 30 * E18
        mkt.chain.expect_revert(
            mkt.fn.slashOracle(task_id, o.address),
            mkt.actors.requester,
            "TaskMarketOracleNotSlashable",
            task_id,
            o.address,
        )
    mkt.chain.expect_revert(
        mkt.fn.claimDeposit(task_id), mkt.actors.oracles[0], "TaskMarketNothingToClaim",
        task_id, mkt.actors.oracles[0].address,
    )  # fmt: skip
    mkt.chain.tx(mkt.fn.claimFallback(task_id), mkt.actors.trainers[0])


# --- F4: no quorum and no ruling never finalizes a plurality ------------------------------------


def test_f4_arbiter_timeout_without_quorum_fails_scoring_instead_of_finalizing(mkt):
    # Prepare: three different roots, no quorum
    task_id = _trained(mkt)
    v_c = Vote(bytes(Web3.keccak(text="root C")), "bafy-c", b"\x04" * 32)
    mkt.score(task_id, {0: VOTE_A, 1: VOTE_B, 2: v_c})
    assert mkt.task(task_id)["phase"] == Phase.DISPUTED
    # Execute: the arbiter never acts
    mkt.chain.warp_past(mkt.task(task_id)["phaseDeadline"])
    mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    # Assert: no root is final, nobody is slashed for a plurality, trainers get the fallback
    info = mkt.task(task_id)
    assert info["phase"] == Phase.CANCELLED and info["outcome"] == Outcome.FAILED
    t0 = mkt.actors.trainers[0]
    mkt.chain.tx(mkt.fn.claimFallback(task_id), t0)
    assert mkt.stake(t0.address) == STAKE
    for o in mkt.actors.oracles:  # every one revealed; nobody ruled against them
        mkt.chain.expect_revert(
            mkt.fn.slashOracle(task_id, o.address), t0, "TaskMarketOracleNotSlashable",
            task_id, o.address,
        )  # fmt: skip


# --- F5: governance cannot strand existing claims ------------------------------------------------


def test_f5_retiring_the_market_keeps_existing_claims_payable(mkt):
    # Prepare: a finalized task
    trainers = mkt.actors.trainers[:2]
    task_id, tree = mkt.finalized_task(trainers, lambda ts: even_rows(ts, 900 * E18))
    # Execute: governance retires the market
    mkt.chain.tx(mkt.registry.functions.setMarket(mkt.market.address, False), mkt.actors.deployer)
    # Assert: claims still pay and release reservations; new tasks cannot reserve stake
    mkt.open_claims(task_id)
    before = mkt.balance(trainers[0].address)
    mkt.claim(task_id, tree, 0)
    assert mkt.balance(trainers[0].address) == before + 450 * E18 + 10 * E18
    assert mkt.reserved(trainers[0].address) == 0
    new_task = mkt.create(accept=False)
    mkt.chain.expect_revert(
        mkt.fn.acceptSeat(new_task),
        mkt.actors.oracles[0],
        "ParticipantRegistryMarketNotActive",
        mkt.market.address,
    )


# --- F6: reputation moves in proportion to the stake at risk ------------------------------------


def test_f6_minimum_stake_task_barely_moves_reputation(mkt):
    # Prepare: the protocol-minimum stake (1 token of 100 for a full step)
    trainers = mkt.actors.trainers[:2]
    spec = TaskSpec(min_stake=E18)
    task_id, tree = mkt.finalized_task(
        trainers, lambda ts: [(t.address, 10 * E18, 1_000_000, 0) for t in ts], spec
    )
    mkt.open_claims(task_id)
    # Execute
    mkt.claim(task_id, tree, 0)
    # Assert: alpha = 0.2 * 1% → 500,000 → 501,000 (not 600,000)
    assert mkt.registry.functions.reputationOf(trainers[0].address).call() == 501_000


# --- F7: a late advance does not eat the next phase's window ------------------------------------


def test_f7_late_advance_gives_the_next_phase_its_full_window(mkt):
    # Prepare: training ends; the commit window passes and nobody advances for a long time
    task_id = _trained(mkt)
    info = mkt.task(task_id)
    assert info["phase"] == Phase.COMMITTING
    mkt.chain.warp_past(info["phaseDeadline"] + 50_000)
    # Execute: a very late advance into Revealing
    mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    # Assert: Revealing's window runs from now, not from the missed deadline
    info = mkt.task(task_id)
    assert info["phase"] == Phase.REVEALING
    assert info["phaseDeadline"] == mkt.chain.now() + TaskSpec().reveal_duration


def _last_seat(mkt, task_id: int):
    """Every oracle but the last accepts; the last one's receipt (it completes the committee)."""
    *first, last = mkt.actors.oracles
    for o in first:
        mkt.chain.tx(mkt.fn.acceptSeat(task_id), o)
    return mkt.chain.tx(mkt.fn.acceptSeat(task_id), last)


def _block_time(mkt, receipt) -> int:
    """The timestamp of the block that mined ``receipt`` (a devnet may mine more blocks since)."""
    return int(mkt.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def test_f7_last_seat_opens_the_task_with_its_join_window_from_that_moment(mkt):
    # Prepare: the committee completes late in its acceptance window
    spec = TaskSpec()
    task_id = mkt.create(spec, accept=False)
    mkt.chain.warp(600)
    # Execute: the last seat (it stores only the completion time, beside the acceptance mask)
    receipt = _last_seat(mkt, task_id)
    opened = _block_time(mkt, receipt)
    # Assert: Open at once, for every reader, with the join window counted from completion
    (event,) = mkt.chain.events(mkt.market, receipt, "PhaseAdvanced")
    assert (event["from"], event["to"]) == (Phase.FORMING, Phase.OPEN)
    info = mkt.task(task_id)
    # the window the task fixed at creation: spec.join_in less the seconds the devnet's clock
    # moved between the test's read and the creating block (a loaded Hardhat node: tens of s)
    join_in = info["joinDuration"]
    assert spec.join_in // 2 < join_in <= spec.join_in
    assert info["phase"] == Phase.OPEN and info["acceptedCount"] == 3
    assert info["phaseDeadline"] == info["joinDeadline"] == opened + join_in
    mkt.chain.expect_revert(
        mkt.fn.acceptSeat(task_id),
        mkt.actors.oracles[0],
        "TaskMarketSeatAlreadyAccepted",
        task_id,
        mkt.actors.oracles[0].address,
    )
    # A join much later, still inside the window, is accepted and stores the same deadline
    mkt.chain.warp(join_in - 100)
    mkt.join(task_id, mkt.actors.trainers[:1])
    info = mkt.task(task_id)
    assert info["phase"] == Phase.OPEN and info["phaseDeadline"] == opened + join_in
    mkt.chain.expect_revert(
        mkt.fn.acceptSeat(task_id),
        mkt.actors.oracles[0],
        "TaskMarketWrongPhase",
        task_id,
        Phase.OPEN,
    )
    # Past the window: a join is refused at the deadline kept since completion
    mkt.chain.warp_past(opened + join_in)
    mkt.chain.expect_revert(
        mkt.fn.join(task_id),
        mkt.actors.trainers[1],
        "TaskMarketDeadlinePassed",
        task_id,
        opened + join_in,
    )


def test_f7_completed_committee_is_open_for_advance_and_cancel_before_any_join(mkt):
    # Prepare: two committees complete; nobody joins either
    spec = TaskSpec()
    idle, cancelled = mkt.create(spec, accept=False), mkt.create(spec, accept=False)
    opened = _block_time(mkt, _last_seat(mkt, idle))
    join_in = mkt.task(idle)["joinDuration"]  # spec.join_in, less any block mined since params
    _last_seat(mkt, cancelled)
    # Execute / Assert: advance before the join deadline is too early (the Open phase's rule,
    # not Forming's acceptance deadline) ...
    mkt.chain.expect_revert(
        mkt.fn.advance(idle),
        mkt.actors.outsiders[0],
        "TaskMarketTooEarly",
        idle,
        opened + join_in + 1,
    )
    # ... the requester's cancel leaves Open (the event says so), releasing the committee
    receipt = mkt.chain.tx(mkt.fn.cancel(cancelled), mkt.actors.requester)
    (event,) = mkt.chain.events(mkt.market, receipt, "PhaseAdvanced")
    assert (event["from"], event["to"]) == (Phase.OPEN, Phase.CANCELLED)
    # ... and past the join deadline with too few trainers, advance cancels from Open
    mkt.chain.warp_past(opened + join_in)
    receipt = mkt.chain.tx(mkt.fn.advance(idle), mkt.actors.outsiders[0])
    (event,) = mkt.chain.events(mkt.market, receipt, "PhaseAdvanced")
    assert (event["from"], event["to"]) == (Phase.OPEN, Phase.CANCELLED)
    assert mkt.reserved(mkt.actors.oracles[0].address) == 0


# --- F8: one stake cannot back several tasks ----------------------------------------------------


def test_f8_stake_reserved_by_one_task_cannot_back_another(mkt):
    # Prepare: a trainer with 100 joins a task with minStake 60
    t0 = mkt.actors.trainers[0]
    spec = TaskSpec(min_stake=60 * E18)
    first = mkt.create(spec)
    mkt.join(first, [t0])
    second = mkt.create(spec)
    # Execute / Assert
    mkt.chain.expect_revert(
        mkt.fn.join(second), t0, "TaskMarketStakeTooLow", t0.address, 40 * E18, 60 * E18
    )
    # Oracles: each seat reserves its weight, so a 100-stake oracle backs at most 3 seats of 30
    third, fourth = mkt.create(), mkt.create(accept=False)
    assert third and mkt.reserved(mkt.actors.oracles[0].address) == 3 * 30 * E18
    mkt.chain.expect_revert(
        mkt.fn.acceptSeat(fourth),
        mkt.actors.oracles[0],
        "ParticipantRegistryInsufficientStake",
        mkt.actors.oracles[0].address,
        10 * E18,
        30 * E18,
    )


# --- F9: protocol minimum stake and trainer bond ---------------------------------------------


def test_f9_zero_stake_accounts_cannot_fill_seats(mkt):
    spec = TaskSpec(min_stake=0, trainer_bond=0)
    mkt.chain.expect_revert(
        mkt.fn.createTask(mkt.params(spec)),
        mkt.actors.requester,
        "TaskMarketStakeBelowMinimum",
        0,
        E18,
    )
    # With the minimum, an account that registered without stake cannot join
    task_id = mkt.create(TaskSpec(min_stake=E18))
    empty = mkt.actors.outsiders[1]
    mkt.chain.tx(mkt.registry.functions.register(Role.TRAINER, b"\x07" * 32, 0), empty)
    mkt.chain.expect_revert(
        mkt.fn.join(task_id), empty, "TaskMarketStakeTooLow", empty.address, 0, E18
    )


def test_f9_task_without_the_minimum_trainer_bond_is_refused(mkt):
    # A bond of 0 (or 1 wei short of the minimum) would let a staked account take a trainer's
    # seat with nothing of its own to lose in the task's token.
    for bond in (0, E18 - 1):
        mkt.chain.expect_revert(
            mkt.fn.createTask(mkt.params(TaskSpec(trainer_bond=bond))),
            mkt.actors.requester,
            "TaskMarketBondBelowMinimum",
            bond,
            E18,
        )
    assert mkt.fn.MIN_TRAINER_BOND().call() == E18
    assert mkt.create(TaskSpec(trainer_bond=E18))


def test_f9_the_minimum_bond_is_one_whole_token_of_the_tasks_own_decimals(mkt):
    # A 6-decimal stablecoin's whole token is 1e6 units: asking 1e18 of them would bar it.
    six = mkt.chain.deploy("SixDecimalToken", mkt.actors.deployer)
    req = mkt.actors.requester
    mkt.chain.tx(six.functions.mint(req.address, 10_000 * E18), req)
    mkt.chain.tx(six.functions.approve(mkt.market.address, 2**256 - 1), req)
    short = TaskSpec(token=six.address, trainer_bond=10**6 - 1)
    mkt.chain.expect_revert(
        mkt.fn.createTask(mkt.params(short)), req, "TaskMarketBondBelowMinimum", 10**6 - 1, 10**6
    )
    assert mkt.create(TaskSpec(token=six.address, trainer_bond=10**6))


# --- F10: slashOracle has a window inside the reservation ---------------------------------------


def test_f10_slash_window_closes_with_the_claim_window_and_reservation(mkt):
    task_id = _trained(mkt)
    votes = {i: replace(VOTE_A, salt=bytes([i + 3]) * 32) for i in range(3)}
    mkt.score(task_id, votes, reveal={0: votes[0], 1: votes[1]})
    silent = mkt.actors.oracles[2]
    # the silent oracle cannot unbond its reserved seat stake while the slash window is open
    free = STAKE - TaskSpec().oracle_slash
    mkt.chain.expect_revert(
        mkt.registry.functions.requestUnstake(STAKE),
        silent,
        "ParticipantRegistryInsufficientStake",
        silent.address,
        free,
        STAKE,
    )
    deadline = mkt.task(task_id)["claimDeadline"]
    mkt.chain.warp_past(deadline)
    mkt.chain.expect_revert(
        mkt.fn.slashOracle(task_id, silent.address),
        mkt.actors.outsiders[0],
        "TaskMarketDeadlinePassed",
        task_id,
        deadline,
    )
    mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    assert mkt.reserved(silent.address) == 0  # released at sweep


# --- F11: unbonding, arbiter minimum ------------------------------------------------------------


def test_f11_second_unstake_does_not_delay_the_first(mkt):
    who = mkt.actors.trainers[0]
    reg = mkt.registry.functions
    first = mkt.chain.tx(reg.requestUnstake(10 * E18), who)
    release = mkt.chain.events(mkt.registry, first, "UnstakeRequested")[0]["releaseAt"]
    mkt.chain.warp(UNBONDING_DELAY - 100)
    mkt.chain.tx(reg.requestUnstake(5 * E18), who)
    mkt.chain.warp_past(release)
    before = mkt.balance(who.address)
    mkt.chain.tx(reg.withdraw(), who)
    assert mkt.balance(who.address) == before + 10 * E18  # the first batch, on time
    info = reg.participant(who.address).call()
    assert info[4] == 5 * E18  # the second batch pending
    mkt.chain.warp(UNBONDING_DELAY)
    mkt.chain.tx(reg.withdraw(), who)
    assert mkt.balance(who.address) == before + 15 * E18


def test_f11_arbiter_cannot_pick_a_root_below_the_minimum_stake(mkt):
    # Prepare: no quorum (10,000 bps) with a 2-1 split: one seat of three is 33% >= 25%
    task_id = _trained(mkt, TaskSpec(quorum_bps=10_000))
    mkt.score(task_id, {0: VOTE_A, 1: replace(VOTE_A, salt=b"\x03" * 32), 2: VOTE_B})
    assert mkt.task(task_id)["phase"] == Phase.DISPUTED
    nobody = bytes(Web3.keccak(text="never revealed"))
    mkt.chain.expect_revert(
        mkt.fn.resolveDispute(task_id, nobody),
        mkt.actors.arbiter,
        "TaskMarketRootNotRevealed",
        task_id,
        nobody,
    )
    mkt.chain.tx(mkt.fn.resolveDispute(task_id, VOTE_B.root), mkt.actors.arbiter)  # 33% ≥ 25%


def test_f11_arbiter_minimum_rejects_a_single_seat_of_five(mkt, chain):
    # Prepare: two extra oracles so the committee has five seats (one seat = 20% < 25%)
    extra = mkt.actors.outsiders[2:4]
    for i, o in enumerate(extra):
        mkt.chain.tx(mkt.registry.functions.register(Role.ORACLE, bytes([9 + i]) * 32, STAKE), o)
    oracles = tuple(o.address for o in (*mkt.actors.oracles, *extra))
    spec = TaskSpec(oracles=oracles, quorum_bps=10_000)
    task_id = mkt.create(spec)
    trainers = mkt.actors.trainers[:2]
    mkt.start(task_id, trainers)
    mkt.train(task_id, trainers)
    by = {o.address: o for o in (*mkt.actors.oracles, *extra)}
    from chainkit import commitment

    votes = [VOTE_A, replace(VOTE_A, salt=b"\x05" * 32), replace(VOTE_A, salt=b"\x06" * 32),
             replace(VOTE_A, salt=b"\x07" * 32), VOTE_B]  # fmt: skip
    for addr, v in zip(oracles, votes, strict=True):
        mkt.chain.tx(mkt.fn.commitScore(task_id, commitment(task_id, addr, v)), by[addr])
    mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.deployer)
    for addr, v in zip(oracles, votes, strict=True):
        mkt.chain.tx(mkt.fn.revealScore(task_id, v.root, v.report_cid, v.salt), by[addr])
    mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.deployer)
    assert mkt.task(task_id)["phase"] == Phase.DISPUTED
    # Execute / Assert
    w = spec.oracle_slash
    mkt.chain.expect_revert(
        mkt.fn.resolveDispute(task_id, VOTE_B.root),
        mkt.actors.arbiter,
        "TaskMarketRootStakeTooLow",
        task_id,
        VOTE_B.root,
        w,
        5 * w * 2500 // 10_000,
    )


# --- F11: payout leaves are bound to (chain id, market, task) -----------------------------------


def test_f11_a_leaf_and_proof_of_task_a_do_not_claim_in_task_b(mkt):
    # Prepare: two tasks, same trainers, same payout rows: one root layout, two domains
    trainers = mkt.actors.trainers[:2]
    task_a, tree_a = mkt.finalized_task(trainers, lambda ts: even_rows(ts, 900 * E18))
    task_b, tree_b = mkt.finalized_task(trainers, lambda ts: even_rows(ts, 900 * E18))
    assert [e.claim_values() for e in tree_a.entries] == [e.claim_values() for e in tree_b.entries]
    assert tree_a.root != tree_b.root  # the leaves differ only by their task id
    mkt.open_claims(task_b)

    # Execute / Assert: task A's leaf and proof, replayed in task B
    for i in range(len(tree_a.entries)):
        mkt.chain.expect_revert(
            mkt.fn.claim(task_b, *tree_a.entries[i].claim_values(), proof_bytes(tree_a, i)),
            mkt.actors.outsiders[0],
            "TaskMarketInvalidProof",
            task_b,
            i,
        )
    for task_id, tree in ((task_b, tree_b), (task_a, tree_a)):  # each task's own leaves claim
        receipt = mkt.claim(task_id, tree, 0)
        (claimed,) = mkt.chain.events(mkt.market, receipt, "Claimed")
        assert (claimed["taskId"], claimed["amount"]) == (task_id, tree.entries[0].amount)


@pytest.mark.parametrize("foreign", ["chain", "market", "task"])
def test_f11_a_root_of_leaves_built_for_another_domain_pays_nobody(mkt, foreign):
    # Prepare: the committee finalizes a root whose leaves name another chain id, another market
    # address or another task id; its proofs are valid against that very root
    trainers = mkt.actors.trainers[:2]
    task_id = _trained(mkt, trainers=trainers)
    own = mkt.domain(task_id)
    other = {
        "chain": LeafDomain(own.chain_id + 1, own.market, task_id),
        "market": LeafDomain(own.chain_id, mkt.registry.address, task_id),
        "task": LeafDomain(own.chain_id, own.market, task_id + 1),
    }[foreign]
    tree = payout_tree(even_rows(trainers, 900 * E18), other)
    vote = Vote(root_bytes(tree), "bafy-foreign", b"\x01" * 32)
    mkt.score(task_id, {i: replace(vote, salt=bytes([i + 1]) * 32) for i in range(3)})
    assert mkt.task(task_id)["payoutRoot"] == root_bytes(tree)
    mkt.open_claims(task_id)

    # Execute / Assert
    for i in range(len(tree.entries)):
        mkt.chain.expect_revert(
            mkt.claim_fn(task_id, tree, i), trainers[i], "TaskMarketInvalidProof", task_id, i
        )


# --- join gate ------------------------------------------------------------------------------


def test_join_gate_refuses_trainers_it_does_not_admit(mkt):
    gate = mkt.chain.deploy("DenyAllJoinGate", mkt.actors.deployer)
    task_id = mkt.create(TaskSpec(join_gate=gate.address))
    t0 = mkt.actors.trainers[0]
    mkt.chain.expect_revert(mkt.fn.join(task_id), t0, "TaskMarketJoinRefused", task_id, t0.address)
    open_task = mkt.create()
    mkt.join(open_task, [t0])


def test_release_stake_after_close_for_a_trainer_that_never_claimed(mkt):
    trainers = mkt.actors.trainers[:2]
    task_id, tree = mkt.finalized_task(trainers, lambda ts: even_rows(ts, 900 * E18))
    mkt.chain.warp_past(mkt.task(task_id)["claimDeadline"])
    mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    t1 = trainers[1]
    assert mkt.reserved(t1.address) == TaskSpec().min_stake
    mkt.chain.tx(mkt.fn.releaseStake(task_id), t1)
    assert mkt.reserved(t1.address) == 0
    mkt.chain.expect_revert(
        mkt.fn.releaseStake(task_id), t1, "TaskMarketNothingToClaim", task_id, t1.address
    )
    assert payout_tree(even_rows(trainers, 900 * E18), mkt.domain(task_id)).root == tree.root
    assert mkt.balance(BURN) >= 0 and root_bytes(tree) == mkt.task(task_id)["payoutRoot"]


def test_registry_reservation_width_is_checked(mkt):
    # Prepare: a staker with more than a uint88 of stake and an EOA authorized as a market
    market, whale = mkt.actors.outsiders[4], mkt.actors.outsiders[5]
    reg = mkt.registry.functions
    mkt.chain.tx(reg.setMarket(market.address, True), mkt.actors.deployer)
    mkt.chain.tx(mkt.token.functions.mint(whale.address, 2**89), mkt.actors.deployer)
    mkt.chain.tx(reg.register(Role.TRAINER, b"\x08" * 32, 2**89), whale)
    # Execute / Assert
    mkt.chain.expect_revert(
        reg.reserve(whale.address, 2**88),
        market,
        "ParticipantRegistryAmountTooLarge",
        2**88,
    )
