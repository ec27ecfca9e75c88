"""ParticipantRegistry: registration, stake and unbonding, market-only powers, reputation."""

from __future__ import annotations

from chainkit import BURN, E18, Role, TaskSpec
from conftest import STAKE, UNBONDING_DELAY
from web3 import Web3

KEY = bytes(Web3.keccak(text="new key"))


def test_register_records_role_key_stake_and_initial_reputation(mkt):
    # Prepare
    who = mkt.actors.outsiders[0]
    before = mkt.balance(who.address)
    # Execute
    receipt = mkt.chain.tx(mkt.registry.functions.register(Role.TRAINER, KEY, 5 * E18), who)
    # Assert
    info = mkt.registry.functions.participant(who.address).call()
    # (role, key, stake, reserved, unbonding, releaseAt, queued, queuedReleaseAt, reputation)
    assert tuple(info) == (Role.TRAINER, KEY, 5 * E18, 0, 0, 0, 0, 0, 500_000)
    assert mkt.balance(who.address) == before - 5 * E18
    assert mkt.chain.events(mkt.registry, receipt, "Registered")[0]["role"] == Role.TRAINER
    assert mkt.chain.events(mkt.registry, receipt, "StakeDeposited")[0]["newStake"] == 5 * E18
    assert mkt.registry.functions.roleOf(who.address).call() == Role.TRAINER
    assert mkt.registry.functions.encryptionKeyOf(who.address).call() == KEY
    assert mkt.registry.functions.reputationOf(who.address).call() == 500_000


def test_register_without_stake_moves_no_tokens(mkt):
    who = mkt.actors.outsiders[0]
    before = mkt.balance(who.address)
    receipt = mkt.chain.tx(mkt.registry.functions.register(Role.REQUESTER, KEY, 0), who)
    assert mkt.balance(who.address) == before
    assert mkt.chain.events(mkt.registry, receipt, "StakeDeposited") == []


def test_register_rejects_role_none_zero_key_and_second_registration(mkt):
    who = mkt.actors.outsiders[0]
    reg = mkt.registry.functions
    mkt.chain.expect_revert(reg.register(Role.NONE, KEY, 0), who, "ParticipantRegistryInvalidRole")
    mkt.chain.expect_revert(
        reg.register(Role.TRAINER, b"\x00" * 32, 0), who, "ParticipantRegistryZeroEncryptionKey"
    )
    trainer = mkt.actors.trainers[0]
    mkt.chain.expect_revert(
        reg.register(Role.ORACLE, KEY, 0),
        trainer,
        "ParticipantRegistryAlreadyRegistered",
        trainer.address,
    )


def test_unregistered_address_cannot_stake_or_change_key(mkt):
    who = mkt.actors.outsiders[0]
    reg = mkt.registry.functions
    mkt.chain.expect_revert(reg.stake(E18), who, "ParticipantRegistryNotRegistered", who.address)
    mkt.chain.expect_revert(
        reg.setEncryptionKey(KEY), who, "ParticipantRegistryNotRegistered", who.address
    )
    mkt.chain.expect_revert(
        reg.requestUnstake(E18), who, "ParticipantRegistryNotRegistered", who.address
    )


def test_set_encryption_key_replaces_the_key(mkt):
    who = mkt.actors.trainers[0]
    receipt = mkt.chain.tx(mkt.registry.functions.setEncryptionKey(KEY), who)
    assert mkt.registry.functions.encryptionKeyOf(who.address).call() == KEY
    assert (
        mkt.chain.events(mkt.registry, receipt, "EncryptionKeyChanged")[0]["encryptionKey"] == KEY
    )
    mkt.chain.expect_revert(
        mkt.registry.functions.setEncryptionKey(b"\x00" * 32),
        who,
        "ParticipantRegistryZeroEncryptionKey",
    )


def test_stake_adds_and_zero_amounts_are_rejected(mkt):
    who = mkt.actors.trainers[0]
    mkt.chain.tx(mkt.registry.functions.stake(7 * E18), who)
    assert mkt.stake(who.address) == STAKE + 7 * E18
    mkt.chain.expect_revert(mkt.registry.functions.stake(0), who, "ParticipantRegistryZeroAmount")
    mkt.chain.expect_revert(
        mkt.registry.functions.requestUnstake(0), who, "ParticipantRegistryZeroAmount"
    )


def test_unstake_waits_for_the_unbonding_delay_then_withdraws(mkt):
    # Prepare
    who = mkt.actors.trainers[0]
    reg = mkt.registry.functions
    before = mkt.balance(who.address)
    # Execute
    receipt = mkt.chain.tx(reg.requestUnstake(40 * E18), who)
    release = mkt.chain.events(mkt.registry, receipt, "UnstakeRequested")[0]["releaseAt"]
    # Assert
    assert release == mkt.chain.now() + UNBONDING_DELAY
    assert mkt.stake(who.address) == STAKE - 40 * E18
    mkt.chain.expect_revert(
        reg.withdraw(), who, "ParticipantRegistryUnbondingNotReleased", who.address, release
    )
    mkt.chain.warp(UNBONDING_DELAY)
    mkt.chain.tx(reg.withdraw(), who)
    assert mkt.balance(who.address) == before + 40 * E18
    assert reg.participant(who.address).call()[4] == 0
    mkt.chain.expect_revert(
        reg.withdraw(), who, "ParticipantRegistryNothingToWithdraw", who.address
    )


def test_unstake_more_than_staked_is_rejected(mkt):
    who = mkt.actors.trainers[0]
    mkt.chain.expect_revert(
        mkt.registry.functions.requestUnstake(STAKE + 1),
        who,
        "ParticipantRegistryInsufficientStake",
        who.address,
        STAKE,
        STAKE + 1,
    )


def test_joining_a_task_reserves_min_stake_and_leaves_the_rest_free(mkt):
    # Prepare
    trainer = mkt.actors.trainers[0]
    spec = TaskSpec()
    task_id = mkt.create(spec)
    # Execute
    mkt.join(task_id, [trainer])
    # Assert: only minStake is held; the rest unbonds at once
    assert mkt.reserved(trainer.address) == spec.min_stake
    free = STAKE - spec.min_stake
    mkt.chain.expect_revert(
        mkt.registry.functions.requestUnstake(free + 1),
        trainer,
        "ParticipantRegistryInsufficientStake",
        trainer.address,
        free,
        free + 1,
    )
    mkt.chain.tx(mkt.registry.functions.requestUnstake(free), trainer)


def test_market_only_functions_reject_other_callers(mkt):
    who = mkt.actors.outsiders[0]
    reg = mkt.registry.functions
    target = mkt.actors.trainers[0].address
    for fn in (
        reg.release(target, 1),
        reg.slash(target, 1, 1, 1, b"\x00" * 32),
        reg.settle(target, 0, 1, 1),
    ):
        mkt.chain.expect_revert(fn, who, "ParticipantRegistryNotMarket", who.address)
    mkt.chain.expect_revert(
        reg.reserve(target, 1), who, "ParticipantRegistryMarketNotActive", who.address
    )


def test_only_the_owner_sets_markets_and_never_address_zero(mkt):
    who = mkt.actors.outsiders[0]
    reg = mkt.registry.functions
    mkt.chain.expect_revert(
        reg.setMarket(who.address, True), who, "OwnableUnauthorizedAccount", who.address
    )
    mkt.chain.expect_revert(
        reg.setMarket("0x" + "00" * 20, True), mkt.actors.deployer, "ParticipantRegistryZeroAddress"
    )
    receipt = mkt.chain.tx(reg.setMarket(who.address, True), mkt.actors.deployer)
    assert reg.isMarket(who.address).call() is True
    assert mkt.chain.events(mkt.registry, receipt, "MarketStatusSet")[0]["status"] == 1
    receipt = mkt.chain.tx(reg.setMarket(who.address, False), mkt.actors.deployer)
    assert reg.isMarket(who.address).call() is False
    assert reg.marketStatus(who.address).call() == 2  # Retired: keeps its reservations' powers


def test_slash_burns_only_reserved_stake(mkt):
    # Prepare: an EOA authorized as a market reserves 60 of a trainer's stake; 40 unbonding
    market = mkt.actors.outsiders[0]
    trainer = mkt.actors.trainers[0]
    reg = mkt.registry.functions
    mkt.chain.tx(reg.setMarket(market.address, True), mkt.actors.deployer)
    mkt.chain.tx(reg.requestUnstake(40 * E18), trainer)
    mkt.chain.tx(reg.reserve(trainer.address, 60 * E18), market)
    burned_before = mkt.balance(BURN)
    evidence = bytes(Web3.keccak(text="root"))
    # Execute: burn 50 of the 60 reserved, releasing all 60
    first = mkt.chain.tx(reg.slash(trainer.address, 50 * E18, 60 * E18, 9, evidence), market)
    # Assert
    event = mkt.chain.events(mkt.registry, first, "Slashed")[0]
    assert (event["amount"], event["taskId"], event["evidence"]) == (50 * E18, 9, evidence)
    info = reg.participant(trainer.address).call()
    assert (info[2], info[3], info[4]) == (10 * E18, 0, 40 * E18)  # unbonding untouched
    assert mkt.balance(BURN) == burned_before + 50 * E18
    mkt.chain.expect_revert(
        reg.slash(trainer.address, 1, 1, 9, evidence),
        market,
        "ParticipantRegistryNotReserved",
        trainer.address,
        0,
        1,
    )
    mkt.chain.expect_revert(
        reg.slash(trainer.address, 2, 1, 9, evidence),
        market,
        "ParticipantRegistryNotReserved",
        trainer.address,
        1,
        2,
    )


def test_settle_moves_reputation_by_the_weighted_ema(mkt):
    market = mkt.actors.outsiders[0]
    trainer = mkt.actors.trainers[0]
    reg = mkt.registry.functions
    mkt.chain.tx(reg.setMarket(market.address, True), mkt.actors.deployer)
    rep = 500_000
    for score, weight in ((1_000_000, 1_000_000), (0, 500_000), (333_333, 10_000)):
        receipt = mkt.chain.tx(reg.settle(trainer.address, 0, score, weight), market)
        alpha = 200_000 * weight // 1_000_000
        expected = (rep * (1_000_000 - alpha) + score * alpha) // 1_000_000
        event = mkt.chain.events(mkt.registry, receipt, "Settled")[0]
        assert (event["oldReputationPpm"], event["newReputationPpm"]) == (rep, expected)
        rep = expected
    assert reg.reputationOf(trainer.address).call() == rep
    mkt.chain.expect_revert(
        reg.settle(trainer.address, 0, 1_000_001, 1),
        market,
        "ParticipantRegistryScoreOutOfRange",
        1_000_001,
    )


def test_views_report_configuration(mkt):
    assert mkt.registry.functions.stakeToken().call() == mkt.token.address
    assert mkt.registry.functions.unbondingDelay().call() == UNBONDING_DELAY
    assert mkt.registry.functions.isMarket(mkt.market.address).call() is True
    assert mkt.registry.functions.owner().call() == mkt.actors.deployer.address
