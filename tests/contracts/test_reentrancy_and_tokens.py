"""Malicious tokens: a token that re-enters the market or the registry on transfer, and
fee-on-transfer tokens, which would break exact escrow accounting."""

from __future__ import annotations

from chainkit import E18, Role, TaskSpec, even_rows, proof_bytes
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3

REENTRANT = function_signature_to_4byte_selector("ReentrancyGuardReentrantCall()")
MAX = 2**256 - 1


def _fund(mkt, token, accounts):
    for a in accounts:
        mkt.chain.tx(token.functions.mint(a.address, 10_000 * E18), a)
        mkt.chain.tx(token.functions.approve(mkt.market.address, MAX), a)


def test_token_reentering_claim_is_stopped_by_the_guard(mkt):
    # Prepare: a task paid in the re-entrant token, finalized with two leaves
    evil = mkt.chain.deploy("ReentrantToken", mkt.actors.deployer)
    trainers = mkt.actors.trainers[:2]
    _fund(mkt, evil, [mkt.actors.requester, *trainers])
    task_id, tree = mkt.finalized_task(
        trainers, lambda ts: even_rows(ts, 900 * E18), TaskSpec(token=evil.address)
    )
    mkt.open_claims(task_id)
    second = tree.entries[1]
    payload = mkt.fn.claim(
        task_id,
        second.index,
        second.account,
        second.amount,
        second.score_ppm,
        second.flags,
        proof_bytes(tree, 1),
    )._encode_transaction_data()
    mkt.chain.tx(evil.functions.arm(mkt.market.address, payload), mkt.actors.deployer)
    # Execute: claiming leaf 0 makes the token call claim(leaf 1) from inside the transfer
    mkt.claim(task_id, tree, 0)
    # Assert: the nested claim hit the guard, leaf 1 is unpaid and still claimable
    assert evil.functions.attacked().call() is True
    assert evil.functions.reentrySucceeded().call() is False
    assert evil.functions.reentryError().call()[:4] == REENTRANT
    assert mkt.fn.isClaimed(task_id, 1).call() is False
    mkt.claim(task_id, tree, 1)
    assert evil.functions.balanceOf(mkt.market.address).call() == 100 * E18  # the unclaimed rest


def test_token_reentering_registry_withdraw_is_stopped_by_the_guard(mkt):
    # Prepare: a registry staking the re-entrant token
    d, who = mkt.actors.deployer, mkt.actors.outsiders[0]
    evil = mkt.chain.deploy("ReentrantToken", d)
    registry = mkt.chain.deploy("ParticipantRegistry", d, evil.address, 10, d.address)
    mkt.chain.tx(evil.functions.mint(who.address, 100 * E18), who)
    mkt.chain.tx(evil.functions.approve(registry.address, MAX), who)
    mkt.chain.tx(registry.functions.register(Role.TRAINER, Web3.keccak(text="k"), 100 * E18), who)
    mkt.chain.tx(registry.functions.requestUnstake(100 * E18), who)
    mkt.chain.warp(11)
    payload = registry.functions.withdraw()._encode_transaction_data()
    mkt.chain.tx(evil.functions.arm(registry.address, payload), d)
    # Execute
    mkt.chain.tx(registry.functions.withdraw(), who)
    # Assert
    assert evil.functions.reentryError().call()[:4] == REENTRANT
    assert evil.functions.balanceOf(who.address).call() == 100 * E18
    assert evil.functions.balanceOf(registry.address).call() == 0


def test_fee_on_transfer_escrow_and_stakes_are_rejected(mkt):
    # Prepare
    fot = mkt.chain.deploy("FeeOnTransferToken", mkt.actors.deployer)
    t0 = mkt.actors.trainers[0]
    _fund(mkt, fot, [mkt.actors.requester, t0])
    # the requester's escrow itself is rejected
    spec = TaskSpec(token=fot.address)
    mkt.chain.expect_revert(
        mkt.fn.createTask(mkt.params(spec)),
        mkt.actors.requester,
        "TaskMarketFeeOnTransfer",
        fot.address,
        spec.budget,
        spec.budget * 99 // 100,
    )
    # a registry staking a fee-on-transfer token
    d, who = mkt.actors.deployer, mkt.actors.outsiders[0]
    registry = mkt.chain.deploy("ParticipantRegistry", d, fot.address, 10, d.address)
    mkt.chain.tx(fot.functions.mint(who.address, 100 * E18), who)
    mkt.chain.tx(fot.functions.approve(registry.address, MAX), who)
    mkt.chain.expect_revert(
        registry.functions.register(Role.TRAINER, Web3.keccak(text="k"), 100 * E18),
        who,
        "ParticipantRegistryFeeOnTransfer",
        100 * E18,
        99 * E18,
    )
    mkt.chain.tx(registry.functions.register(Role.TRAINER, Web3.keccak(text="k"), 0), who)
    mkt.chain.expect_revert(
        registry.functions.stake(10 * E18),
        who,
        "ParticipantRegistryFeeOnTransfer",
        10 * E18,
        10 * E18 * 99 // 100,
    )
