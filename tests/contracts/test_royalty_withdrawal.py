"""A trainer that withdraws consent stops earning royalties, on real Anvil: ModelMarket listing a
version recorded in the real ModelVersions; a sale delivered before the withdrawal pays the
withdrawn trainer its share, sales delivered after it are shared among the remaining trainers by
their scores, and every wei of the trainers' cut is paid or swept. And `fedmarket task show`
listing the task's retention expiry, withdrawals and model versions."""

from __future__ import annotations

import json

import pytest
from chainkit import E18, proof_bytes
from click.testing import CliRunner
from productkit import Product, deployment_of, final_digest, setup_product
from web3 import Web3

from marketplace.chain.deploy import ContractRecord, Deployment, write_deployment
from marketplace.valuation.merkle import PayoutTree
from node.cli import cli

WAD = 10**18
SCORES = [1_000_000, 640_000, 333_333]
PRICE = 7_777_777_777_777_777_777  # odd: every split rounds


@pytest.fixture
def pm(mkt) -> Product:  # type: ignore[no-untyped-def]
    return setup_product(mkt)


def _listed_with_versions(pm: Product) -> tuple[int, int, PayoutTree, object]:
    """A three-trainer task whose final model is version 1 of a real ModelVersions, listed."""

    def rows(ts):  # type: ignore[no-untyped-def]
        return [(t.address, 100 * E18, s, 0) for t, s in zip(ts, SCORES, strict=True)]

    task_id, tree = pm.approved_task(rows, n=3)
    chain, req = pm.chain, pm.requester
    v = chain.deploy("ModelVersions", pm.mkt.actors.deployer, pm.mkt.market.address)
    terms = (pm.mkt.token.address, 0, 0, chain.now() + 100_000, 50_000, 2)
    chain.tx(v.functions.registerTask(task_id, terms), req)
    chain.tx(v.functions.recordVersion(task_id, 0, 0, 0, final_digest(task_id), "bafy-final"), req)
    for o in pm.mkt.actors.oracles[:2]:
        chain.tx(v.functions.attestVersion(task_id, 1), o)
    listing_id = pm.list(task_id, price=PRICE, versions=v.address, version=1)
    return task_id, listing_id, tree, v


def _settle_fn(pm: Product, listing_id: int, tree: PayoutTree, i: int):  # type: ignore[no-untyped-def]
    e = tree.entries[i]
    return pm.fn.settleWithdrawal(
        listing_id, e.index, e.account, e.amount, e.score_ppm, e.flags, proof_bytes(tree, i)
    )


def _claim(pm: Product, listing_id: int, tree: PayoutTree, i: int) -> int:
    account = tree.entries[i].account
    before = pm.mkt.balance(account)
    pm.tx(pm.claim_royalty_fn(listing_id, tree, i), pm.requester)
    return pm.mkt.balance(account) - before


def test_a_withdrawn_trainer_keeps_earlier_royalties_and_later_sales_go_to_the_others(pm):
    # Prepare: one sale delivered, then trainer 2 withdraws consent
    task_id, listing_id, tree, v = _listed_with_versions(pm)
    b0, b1 = pm.buyers
    trainers = pm.mkt.actors.trainers[:3]
    pm.deliver(pm.buy(listing_id, b0))
    pm.chain.tx(v.functions.requestWithdrawal(task_id), trainers[2])
    # Execute: a sale delivered before settlement (held), the settlement, one more sale
    pm.deliver(pm.buy(listing_id, b1))
    pm.chain.expect_revert(
        _settle_fn(pm, listing_id, tree, 1), b0, "ModelMarketNoWithdrawalToSettle",
        listing_id, trainers[1].address,
    )  # fmt: skip
    r = pm.tx(_settle_fn(pm, listing_id, tree, 2), b0)  # anyone, with the public payout leaf
    pm.chain.expect_revert(
        _settle_fn(pm, listing_id, tree, 2), b0, "ModelMarketNoWithdrawalToSettle",
        listing_id, trainers[2].address,
    )  # fmt: skip
    pm.deliver(pm.buy(listing_id, b0))
    paid = [_claim(pm, listing_id, tree, i) for i in range(3)]
    # Assert: the withdrawn trainer got its share of the first sale only
    (event,) = pm.chain.events(pm.mm, r, "WithdrawalSettled")
    assert (event["account"], event["scorePpm"]) == (trainers[2].address, SCORES[2])
    tr_cut = PRICE * 8000 // 10_000
    total = sum(SCORES)
    assert pm.fn.trainerGross(listing_id).call() == 3 * tr_cut
    assert paid[2] == (tr_cut * WAD // total) * SCORES[2] // WAD
    assert paid[2] < 3 * tr_cut * SCORES[2] // total  # what it would have had without withdrawing
    # the others: the first sale by all three scores, the two later ones by their two scores
    per_score, active = tr_cut * WAD // total, total - SCORES[2]
    for i in (0, 1):
        assert paid[i] == per_score * SCORES[i] // WAD + 2 * tr_cut * SCORES[i] // active
    # conservation to the wei: claims + the sweep = the trainers' cut, and the dust is tiny
    pm.chain.expect_revert(pm.claim_royalty_fn(listing_id, tree, 2), b0, "ModelMarketNothingDue")
    pm.chain.warp_past(pm.listing(listing_id)["royaltyDeadline"])
    swept = pm.tx(pm.fn.sweepRoyalties(listing_id), b0)
    dust = (
        pm.chain.events(pm.mm, swept, "RoyaltiesSwept")[0]["amount"]
        - (3 * (PRICE * 500 // 10_000)) % 2
    )
    assert sum(paid) + dust == 3 * tr_cut
    assert 0 <= dust < 6
    assert pm.listing(listing_id)["trainerClaimed"] == 3 * tr_cut


def test_cuts_delivered_between_two_withdrawals_still_pay_the_second_trainer(pm):
    # Prepare: trainer 1 withdraws, a sale, trainer 2 withdraws, a sale; nothing settled yet
    task_id, listing_id, tree, v = _listed_with_versions(pm)
    b0, b1 = pm.buyers
    trainers = pm.mkt.actors.trainers[:3]
    pm.chain.tx(v.functions.requestWithdrawal(task_id), trainers[1])
    pm.deliver(pm.buy(listing_id, b0))
    pm.chain.tx(v.functions.requestWithdrawal(task_id), trainers[2])
    pm.deliver(pm.buy(listing_id, b1))
    # Execute: settle in withdrawal order (out of order is refused), then everyone claims
    pm.chain.expect_revert(
        _settle_fn(pm, listing_id, tree, 2), b0, "ModelMarketNoWithdrawalToSettle",
        listing_id, trainers[2].address,
    )  # fmt: skip
    pm.tx(_settle_fn(pm, listing_id, tree, 1), b0)
    pm.tx(_settle_fn(pm, listing_id, tree, 2), b0)
    pm.chain.expect_revert(pm.claim_royalty_fn(listing_id, tree, 1), b0, "ModelMarketNothingDue")
    paid0, paid2 = _claim(pm, listing_id, tree, 0), _claim(pm, listing_id, tree, 2)
    # Assert: sale 1 (after trainer 1 left) shared by trainers 0 and 2; sale 2 by trainer 0 alone
    tr_cut = PRICE * 8000 // 10_000
    per_score = tr_cut * WAD // (SCORES[0] + SCORES[2])
    assert paid2 == per_score * SCORES[2] // WAD
    assert paid0 == per_score * SCORES[0] // WAD + tr_cut * SCORES[0] // SCORES[0]
    assert 0 <= 2 * tr_cut - paid0 - paid2 < 3


def test_task_show_lists_the_retention_expiry_withdrawals_and_versions(pm, anvil, tmp_path):
    # Prepare: version 1 (the trained model), trainer 2 withdraws, version 2 unlearns it
    task_id, _, _, v = _listed_with_versions(pm)
    pm.chain.tx(v.functions.requestWithdrawal(task_id), pm.mkt.actors.trainers[2])
    unlearned = Web3.keccak(text="unlearned")
    pm.chain.tx(v.functions.recordVersion(task_id, 1, 1, 1, unlearned, "bafy-v2"), pm.requester)
    base = deployment_of(pm)
    record = ContractRecord(v.address, pm.chain.artifacts["ModelVersions"].abi)
    contracts = {**base.contracts, "ModelVersions": record}
    deployments = tmp_path / "deployments"
    write_deployment(Deployment(chain_id=base.chain_id, contracts=contracts), deployments)
    args = ["--chain-rpc", anvil.rpc_url, "--deployments", str(deployments),
            "--home", str(tmp_path / "home"), "task", "show", str(task_id)]  # fmt: skip
    # Execute
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    text = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    # Assert
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.output)["retention"]
    assert shown["retentionExpiry"] == v.functions.taskState(task_id).call()[4]
    (w,) = shown["withdrawals"]
    assert (w["number"], w["trainer"]) == (1, pm.mkt.actors.trainers[2].address)
    v1, v2 = shown["versions"]
    assert (v1["parent"], v1["reason"], v1["cid"], v1["sellable"]) == (
        0,
        "trained",
        "bafy-final",
        True,
    )
    assert v1["digest"] == "0x" + final_digest(task_id).hex()
    assert (v2["parent"], v2["reason"], v2["excludes"], v2["cid"]) == (1, "unlearned", 1, "bafy-v2")
    assert v2["digest"] == "0x" + bytes(unlearned).hex() and v2["sellable"] is False
    assert text.exit_code == 0, text.output
    assert "data retained until" in text.output and "withdrawal 1 by" in text.output
    assert "bafy-v2" in text.output and "unlearned" in text.output
