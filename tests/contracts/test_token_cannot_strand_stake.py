"""Issue-10 audit finding (was open): a task's own token could strand the stake its committee and
trainers reserved, because every path that releases reservations also pushed the task's tokens.
Replayed here with a token whose transfers to one address can be switched to revert, return
false or burn all their gas (``contracts/test/SwitchableToken.sol``): the transitions now go
through, the reservations are released, the refused payment is owed (``PaymentDeferred``,
``owedTo``) and ``sendOwed`` pays it once the token lets it through."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chainkit import BURN, E18, Outcome, Phase, TaskSpec, Vote, even_rows, payout_tree, root_bytes
from conftest import STAKE
from web3 import Web3

from marketplace.chain.clients import Marketplace
from marketplace.chain.deploy import ContractRecord, Deployment

NORMAL, REVERT, RETURN_FALSE, BURN_GAS = 0, 1, 2, 3
VOTE_A = Vote(bytes(Web3.keccak(text="root A")), "bafy-a", b"\x01" * 32)
VOTE_B = Vote(bytes(Web3.keccak(text="root B")), "bafy-b", b"\x02" * 32)


@pytest.fixture
def sw(mkt):
    """A SwitchableToken every actor holds and has approved to the market."""
    d = mkt.actors.deployer
    token = mkt.chain.deploy("SwitchableToken", d)
    for a in mkt.everyone():
        mkt.chain.tx(token.functions.mint(a.address, 10_000 * E18), d)
        mkt.chain.tx(token.functions.approve(mkt.market.address, 2**256 - 1), a)
    return token


def _switch(mkt, sw, address, mode):
    mkt.chain.tx(sw.functions.setMode(address, mode), mkt.actors.outsiders[3])


def _bal(sw, address):
    return int(sw.functions.balanceOf(address).call())


def _owed(mkt, task_id, address):
    return int(mkt.fn.owedTo(task_id, address).call())


def _client(mkt, sw):
    """The library's client on this market (its decoder also knows the switchable token)."""

    def rec(name, address):
        return ContractRecord(Web3.to_checksum_address(address), mkt.chain.artifacts[name].abi)

    contracts = {
        "RewardToken": rec("RewardToken", mkt.token.address),
        "ParticipantRegistry": rec("ParticipantRegistry", mkt.registry.address),
        "TaskMarket": rec("TaskMarket", mkt.market.address),
        "SwitchableToken": rec("SwitchableToken", sw.address),
    }
    return Marketplace(mkt.chain.w3, Deployment(chain_id=mkt.chain.chain_id, contracts=contracts))


def _tx_with_gas(mkt, fn, who, gas):
    """Send ``fn`` with exactly ``gas`` as its limit (the test kit's default is 6M)."""
    params = mkt.chain._params(who, 0)
    params["gas"] = gas
    return mkt.chain._send(fn.build_transaction(params), who, fn.fn_name, fn)


def _deferred(mkt, receipt):
    return [
        (int(e["taskId"]), e["account"], int(e["amount"]))
        for e in mkt.chain.events(mkt.market, receipt, "PaymentDeferred")
    ]


def _market_balance_holds(mkt, sw, task_ids, owed_to):
    """The accounting invariant with the owed term, for tasks of ``sw`` only."""
    held = 0
    for tid in task_ids:
        t = mkt.task(tid)
        held += t["budget"] - t["paid"] - t["refunded"] + t["bondsHeld"] + t["depositHeld"]
        if t["phase"] == Phase.DISPUTED and t["disputer"] != "0x" + "00" * 20:
            held += t["disputeBond"]
        held += sum(_owed(mkt, tid, a) for a in owed_to)
    assert _bal(sw, mkt.market.address) == held


def _send_owed_once_unblocked(mkt, sw, task_id, account, amount):
    """sendOwed is strict while the token still refuses, pays once, then has nothing left."""
    anyone = mkt.actors.outsiders[1]
    mkt.chain.expect_revert(mkt.fn.sendOwed(task_id, account), anyone, "SwitchableTokenBlocked")
    _switch(mkt, sw, account, NORMAL)
    before = _bal(sw, account)
    receipt = mkt.chain.tx(mkt.fn.sendOwed(task_id, account), anyone)
    (paid,) = mkt.chain.events(mkt.market, receipt, "OwedPaid")
    assert (paid["account"], int(paid["amount"])) == (account, amount)
    assert _bal(sw, account) - before == amount and _owed(mkt, task_id, account) == 0
    mkt.chain.expect_revert(
        mkt.fn.sendOwed(task_id, account), anyone, "TaskMarketNothingToClaim", task_id, account
    )


def test_audit_replay_advance_cancels_and_releases_when_the_refund_reverts(mkt, sw):
    # Prepare (the audit's replay): two of three oracles accept (30 tokens reserved each), then
    # the requester flips its token to revert transfers to itself
    req = mkt.actors.requester
    spec = TaskSpec(token=sw.address, requester_deposit=5 * E18)
    task_id = mkt.create(spec, accept=False)
    o0, o1, _ = mkt.actors.oracles
    for o in (o0, o1):
        mkt.chain.tx(mkt.fn.acceptSeat(task_id), o)
        assert mkt.reserved(o.address) == spec.oracle_slash
    _switch(mkt, sw, req.address, REVERT)
    # Execute: after acceptDuration anyone advances (it reverted inside the refund before)
    mkt.chain.warp_past(mkt.task(task_id)["phaseDeadline"])
    receipt = mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    # Assert: Cancelled, reservations released, both oracles unstake everything at once
    refund = spec.budget + spec.requester_deposit
    assert mkt.task(task_id)["phase"] == Phase.CANCELLED
    assert _deferred(mkt, receipt) == [(task_id, req.address, refund)]
    for o in (o0, o1):
        assert mkt.reserved(o.address) == 0
        mkt.chain.tx(mkt.registry.functions.requestUnstake(STAKE), o)
    client = _client(mkt, sw)
    assert client.owed_to(task_id, req.address) == refund
    _market_balance_holds(mkt, sw, [task_id], [req.address])
    # The library's client pays it once the token lets it through (anyone may send it)
    _switch(mkt, sw, req.address, NORMAL)
    before = _bal(sw, req.address)
    client.send_owed(mkt.actors.outsiders[1], task_id, req.address)
    assert _bal(sw, req.address) - before == refund and client.owed_to(task_id, req.address) == 0
    _market_balance_holds(mkt, sw, [task_id], [req.address])


@pytest.mark.parametrize("mode", [REVERT, RETURN_FALSE, BURN_GAS])
def test_cancel_in_open_completes_whatever_the_token_does_to_the_requester(mkt, sw, mode):
    # Prepare: committee seated, one trainer joined; the requester's transfers then misbehave
    req, t0 = mkt.actors.requester, mkt.actors.trainers[0]
    spec = TaskSpec(token=sw.address)
    task_id = mkt.create(spec)
    mkt.join(task_id, [t0])
    _switch(mkt, sw, req.address, mode)
    # Execute: the requester's own cancel; a token that burns all the gas it is given leaves
    # 1/64 of it for the bookkeeping after the try, so 2M gas is enough
    receipt = _tx_with_gas(mkt, mkt.fn.cancel(task_id), req, 2_000_000)
    # Assert
    assert mkt.task(task_id)["phase"] == Phase.CANCELLED
    assert _deferred(mkt, receipt) == [(task_id, req.address, spec.budget)]
    for o in mkt.actors.oracles:
        assert mkt.reserved(o.address) == 0
    # The trainer takes its bond and reservation back as before
    mkt.chain.tx(mkt.fn.withdrawBond(task_id), t0)
    assert mkt.reserved(t0.address) == 0
    _switch(mkt, sw, req.address, NORMAL)
    mkt.chain.tx(mkt.fn.sendOwed(task_id, req.address), mkt.actors.outsiders[1])
    assert _owed(mkt, task_id, req.address) == 0 and _bal(sw, mkt.market.address) == 0


def test_trainer_refused_by_the_token_still_gets_its_reservation_back(mkt, sw):
    # withdrawBond (cancelled task): the trainer's own transfer reverts; its bond is owed and its
    # reservation released all the same
    req, t0 = mkt.actors.requester, mkt.actors.trainers[0]
    spec = TaskSpec(token=sw.address)
    task_id = mkt.create(spec)
    mkt.join(task_id, [t0])
    mkt.chain.tx(mkt.fn.cancel(task_id), req)
    _switch(mkt, sw, t0.address, REVERT)
    receipt = mkt.chain.tx(mkt.fn.withdrawBond(task_id), t0)
    assert _deferred(mkt, receipt) == [(task_id, t0.address, spec.trainer_bond)]
    assert mkt.reserved(t0.address) == 0
    _send_owed_once_unblocked(mkt, sw, task_id, t0.address, spec.trainer_bond)


def test_sweep_closes_and_releases_when_requester_and_a_trainer_are_refused(mkt, sw):
    # Prepare: finalized task; t0 claims, t1 is refused by the token (its claim reverts) and the
    # requester is refused too
    req = mkt.actors.requester
    t0, t1 = mkt.actors.trainers[:2]
    spec = TaskSpec(token=sw.address, requester_deposit=5 * E18)
    task_id, tree = mkt.finalized_task([t0, t1], lambda ts: even_rows(ts, 900 * E18), spec)
    mkt.open_claims(task_id)
    mkt.claim(task_id, tree, 0)
    _switch(mkt, sw, t1.address, REVERT)
    _switch(mkt, sw, req.address, REVERT)
    mkt.chain.expect_revert(
        mkt.claim_fn(task_id, tree, 1), t1, "SwitchableTokenBlocked", t1.address
    )
    # Execute
    mkt.chain.warp_past(mkt.task(task_id)["claimDeadline"])
    receipt = mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    # Assert: Closed, committee released; refund owed; the burn owed untried once a push failed
    refund = spec.budget - 450 * E18 + spec.requester_deposit
    assert mkt.task(task_id)["phase"] == Phase.CLOSED
    assert _deferred(mkt, receipt) == [
        (task_id, req.address, refund),
        (task_id, BURN, spec.trainer_bond),
    ]
    for o in mkt.actors.oracles:
        assert mkt.reserved(o.address) == 0
        mkt.chain.tx(mkt.registry.functions.requestUnstake(STAKE), o)
    # The refused trainer releases its own reservation once Closed
    assert mkt.reserved(t1.address) == spec.min_stake
    mkt.chain.tx(mkt.fn.releaseStake(task_id), t1)
    assert mkt.reserved(t1.address) == 0
    _market_balance_holds(mkt, sw, [task_id], [req.address, BURN])
    burned = _bal(sw, BURN)
    mkt.chain.tx(mkt.fn.sendOwed(task_id, BURN), mkt.actors.outsiders[2])
    assert _bal(sw, BURN) - burned == spec.trainer_bond
    _send_owed_once_unblocked(mkt, sw, task_id, req.address, refund)
    assert _bal(sw, mkt.market.address) == 0


def test_sweep_survives_a_token_that_burns_all_gas_for_the_requester(mkt, sw):
    req = mkt.actors.requester
    trainers = mkt.actors.trainers[:2]
    spec = TaskSpec(token=sw.address)
    task_id, _ = mkt.finalized_task(trainers, lambda ts: even_rows(ts, 900 * E18), spec)
    _switch(mkt, sw, req.address, BURN_GAS)
    mkt.chain.warp_past(mkt.task(task_id)["claimDeadline"])
    # Two pushes, but the second is owed untried once the first failed: 4M gas is enough
    receipt = _tx_with_gas(mkt, mkt.fn.sweep(task_id), mkt.actors.outsiders[0], 4_000_000)
    assert mkt.task(task_id)["phase"] == Phase.CLOSED
    assert [a for _, a, _ in _deferred(mkt, receipt)] == [req.address, BURN]
    for o in mkt.actors.oracles:
        assert mkt.reserved(o.address) == 0
    for t in trainers:
        mkt.chain.tx(mkt.fn.releaseStake(task_id), t)
        assert mkt.reserved(t.address) == 0


def test_failed_scoring_refund_to_a_refused_requester_is_owed(mkt, sw):
    # Nobody commits a sample and nobody reveals: the budget goes back to the requester at once
    req = mkt.actors.requester
    trainers = mkt.actors.trainers[:2]
    spec = TaskSpec(token=sw.address, rounds=1)
    task_id = mkt.create(spec)
    mkt.start(task_id, trainers)
    _switch(mkt, sw, req.address, REVERT)
    for _ in range(3):  # training -> committing -> revealing -> failed
        mkt.chain.warp_past(mkt.task(task_id)["phaseDeadline"])
        receipt = mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    info = mkt.task(task_id)
    assert (info["phase"], info["outcome"]) == (Phase.CANCELLED, Outcome.FAILED)
    assert _deferred(mkt, receipt) == [(task_id, req.address, spec.budget)]
    # The rest of the task runs to Closed: trainers and oracles are released
    for t in trainers:
        mkt.chain.tx(mkt.fn.claimFallback(task_id), t)
        assert mkt.reserved(t.address) == 0
    mkt.chain.warp_past(mkt.task(task_id)["phaseDeadline"])
    mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    for o in mkt.actors.oracles:
        assert mkt.reserved(o.address) == 0
    _send_owed_once_unblocked(mkt, sw, task_id, req.address, spec.budget)


def test_dispute_bond_returned_to_a_refused_disputer_is_owed(mkt, sw):
    # Prepare: o0, o1 agree on A (quorum), o2 reveals B; trainer t0 disputes, then its token
    # transfers revert; the arbiter rules B (the root changed: the bond goes back to t0)
    t0, t1 = mkt.actors.trainers[:2]
    spec = TaskSpec(token=sw.address)
    task_id = mkt.create(spec)
    mkt.start(task_id, [t0, t1])
    mkt.train(task_id, [t0, t1])
    mkt.score(task_id, {0: VOTE_A, 1: replace(VOTE_A, salt=b"\x03" * 32), 2: VOTE_B})
    assert mkt.task(task_id)["phase"] == Phase.FINALIZED
    mkt.chain.tx(mkt.fn.dispute(task_id), t0)
    _switch(mkt, sw, t0.address, REVERT)
    # Execute
    receipt = mkt.chain.tx(mkt.fn.resolveDispute(task_id, VOTE_B.root), mkt.actors.arbiter)
    # Assert: finalized on B, bond owed to the disputer
    info = mkt.task(task_id)
    assert info["phase"] == Phase.FINALIZED and bytes(info["payoutRoot"]) == VOTE_B.root
    assert _deferred(mkt, receipt) == [(task_id, t0.address, spec.dispute_bond)]
    _market_balance_holds(mkt, sw, [task_id], [t0.address])
    _send_owed_once_unblocked(mkt, sw, task_id, t0.address, spec.dispute_bond)


def test_dispute_timeout_burn_refused_by_the_token_is_owed(mkt, sw):
    # A quorum root is disputed, the arbiter does not act, the token refuses the burn address:
    # advance still finalizes (the bond is owed to the burn address) and the task closes
    trainers = mkt.actors.trainers[:2]
    spec = TaskSpec(token=sw.address)
    task_id, tree = mkt.finalized_task(trainers, lambda ts: even_rows(ts, 900 * E18), spec)
    mkt.chain.tx(mkt.fn.dispute(task_id), mkt.actors.oracles[2])
    _switch(mkt, sw, BURN, REVERT)
    mkt.chain.warp_past(mkt.task(task_id)["phaseDeadline"])
    receipt = mkt.chain.tx(mkt.fn.advance(task_id), mkt.actors.outsiders[0])
    assert mkt.task(task_id)["phase"] == Phase.FINALIZED
    assert root_bytes(tree) == mkt.task(task_id)["payoutRoot"]
    assert _deferred(mkt, receipt) == [(task_id, BURN, spec.dispute_bond)]
    mkt.chain.warp_past(mkt.task(task_id)["claimDeadline"])
    mkt.chain.tx(mkt.fn.sweep(task_id), mkt.actors.outsiders[0])
    for a in (*mkt.actors.oracles, *trainers):
        if mkt.reserved(a.address):
            mkt.chain.tx(mkt.fn.releaseStake(task_id), a)
        assert mkt.reserved(a.address) == 0
    assert payout_tree(even_rows(trainers, 900 * E18), mkt.domain(task_id)).root == tree.root
    _send_owed_once_unblocked(mkt, sw, task_id, BURN, spec.dispute_bond + 2 * spec.trainer_bond)
