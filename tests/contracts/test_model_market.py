"""ModelMarket on the real devnet: the K-limit, the bounty, auditor independence, listings, sales,
refunds, expiry, the versions gate, and royalties claimed with real payout leaves."""

from __future__ import annotations

import pytest
from chainkit import E18
from productkit import Product, digest_of, key, setup_product

from marketplace.chain.model_market_client import ProductParams


@pytest.fixture
def pm(mkt) -> Product:
    return setup_product(mkt)


# --- validation submissions -------------------------------------------------------------------


def test_the_k_plus_first_submission_reverts_and_k_cannot_be_raised(pm):
    # Prepare: K = 2
    task_id, _ = pm.finished_task()
    params = ProductParams(max_submissions=2, threshold_ppm=800_000, eval_commit_duration=60,
                           eval_reveal_duration=60)  # fmt: skip
    pm.configure(task_id, params)
    dev, req = pm.developers[0], pm.requester
    # a developer cannot go before the final aggregate (submission 1)
    pm.chain.expect_revert(
        pm.fn.submit(task_id, "bafy-x", digest_of("x")), dev, "ModelMarketFinalModelFirst", task_id
    )
    # Execute
    assert pm.submit_final(task_id) == 1
    assert pm.submit(task_id, dev, "rev2") == 2
    # Assert
    pm.chain.expect_revert(
        pm.fn.submit(task_id, "bafy-3", digest_of("rev3")),
        dev,
        "ModelMarketSubmissionLimit",
        task_id,
        2,
    )
    pm.chain.expect_revert(
        pm.fn.configure(task_id, ProductParams(5, 1).as_tuple()), req,
        "ModelMarketAlreadyConfigured", task_id,
    )  # fmt: skip
    pm.chain.expect_revert(
        pm.fn.submitFinalModel(task_id, "again"), req, "ModelMarketFinalModelFirst", task_id
    )
    sub1 = pm.submission(task_id, 1)
    assert sub1["developer"] == req.address
    assert sub1["digest"] == pm.mkt.fn.modelDigest(task_id, 3).call()
    assert pm.product(task_id)["submissionCount"] == 2


def test_submitters_need_the_developer_role_and_no_seat_on_the_committee(pm):
    task_id, _ = pm.finished_task()
    pm.configure(task_id)
    pm.submit_final(task_id)
    outsider = pm.buyers[0]
    pm.chain.expect_revert(
        pm.fn.submit(task_id, "c", digest_of("c")),
        outsider,
        "ModelMarketWrongRole",
        outsider.address,
        1,
    )
    oracle = pm.mkt.actors.oracles[0]
    pm.tx(pm.fn.register(1, key("oracle-dev")), oracle)
    pm.chain.expect_revert(
        pm.fn.submit(task_id, "c", digest_of("c")), oracle, "ModelMarketConflictOfInterest",
        task_id,
        oracle.address,
    )  # fmt: skip
    pm.chain.expect_revert(
        pm.fn.register(2, key("again")), oracle, "ModelMarketAlreadyRegistered", oracle.address, 1
    )
    pm.chain.expect_revert(
        pm.fn.register(0, key("none")), outsider, "ModelMarketInvalidRegistration"
    )
    pm.chain.expect_revert(
        pm.fn.submit(task_id, "c", b"\x00" * 32), pm.developers[0], "ModelMarketZeroHash"
    )


def test_evaluation_is_commit_reveal_with_the_tasks_quorum(pm):
    task_id, _ = pm.finished_task()
    pm.configure(task_id)
    pm.submit_final(task_id)
    o0, o1, o2 = pm.mkt.actors.oracles
    from marketplace.chain.model_market_client import evaluation_commitment

    def c(o, score, salt):
        return evaluation_commitment(
            pm.chain.chain_id, pm.mm.address, task_id, 1, o.address, score, salt
        )

    s = b"\x07" * 32
    pm.tx(pm.fn.commitEvaluation(task_id, 1, c(o0, 900_000, s)), o0)
    # too early: the window is open and not everyone committed
    pm.chain.expect_revert(
        pm.fn.revealEvaluation(task_id, 1, 900_000, s), o0, "ModelMarketTooEarly"
    )
    pm.chain.expect_revert(
        pm.fn.commitEvaluation(task_id, 1, c(o0, 1, s)), o0, "ModelMarketAlreadyCommitted",
        task_id, 1,
        o0.address,
    )  # fmt: skip
    outsider = pm.buyers[0]
    pm.chain.expect_revert(
        pm.fn.commitEvaluation(task_id, 1, c(outsider, 1, s)), outsider,
        "ModelMarketNotCommitteeMember", task_id, outsider.address,
    )  # fmt: skip
    pm.tx(pm.fn.commitEvaluation(task_id, 1, c(o1, 900_000, s)), o1)
    pm.tx(pm.fn.commitEvaluation(task_id, 1, c(o2, 100_000, s)), o2)
    # a reveal that does not match the commitment
    pm.chain.expect_revert(
        pm.fn.revealEvaluation(task_id, 1, 950_000, s),
        o0,
        "ModelMarketBadReveal",
        task_id,
        1,
        o0.address,
    )
    pm.chain.expect_revert(
        pm.fn.revealEvaluation(task_id, 1, 2_000_000, s), o0, "ModelMarketInvalidScore", 2_000_000
    )
    pm.tx(pm.fn.revealEvaluation(task_id, 1, 900_000, s), o0)
    assert pm.submission(task_id, 1)["decided"] is False  # 1/3 of stake < 66%
    r = pm.tx(pm.fn.revealEvaluation(task_id, 1, 100_000, s), o2)
    assert pm.chain.events(pm.mm, r, "EvaluationDecided") == []
    r = pm.tx(pm.fn.revealEvaluation(task_id, 1, 900_000, s), o1)
    (decided,) = pm.chain.events(pm.mm, r, "EvaluationDecided")
    assert (decided["scorePpm"], decided["passed"]) == (900_000, True)
    pm.chain.expect_revert(
        pm.fn.revealEvaluation(task_id, 1, 900_000, s),
        o1,
        "ModelMarketBadReveal",
        task_id,
        1,
        o1.address,
    )
    pm.chain.expect_revert(
        pm.fn.commitEvaluation(task_id, 9, c(o0, 1, s)),
        o0,
        "ModelMarketUnknownSubmission",
        task_id,
        9,
    )


def test_evaluation_stake_is_reserved_at_commit_and_slashed_for_silence_not_dissent(pm):
    # Prepare: o0 and o1 reveal the quorum's score, o2 reveals another; on submission 2, o2
    # commits and never reveals
    from marketplace.chain.model_market_client import evaluation_commitment

    task_id, _ = pm.finished_task()
    pm.configure(task_id)
    pm.submit_final(task_id)
    oracles = pm.mkt.actors.oracles
    slash = pm.mkt.task(task_id)["oracleSlash"]
    before = [pm.mkt.stake(o.address) for o in oracles]
    reserved = [pm.mkt.reserved(o.address) for o in oracles]
    s = b"\x05" * 32

    def commit(o, sub, score):
        c = evaluation_commitment(
            pm.chain.chain_id, pm.mm.address, task_id, sub, o.address, score, s
        )
        pm.tx(pm.fn.commitEvaluation(task_id, sub, c), o)

    for o, score in zip(oracles, (900_000, 900_000, 100_000), strict=True):
        commit(o, 1, score)
    # Assert: each commitment reserved the task's oracleSlash in the registry
    assert [pm.mkt.reserved(o.address) for o in oracles] == [r + slash for r in reserved]
    pm.chain.expect_revert(
        pm.fn.settleEvaluation(task_id, 1, oracles[0].address), pm.buyers[0],
        "ModelMarketTooEarly",
    )  # fmt: skip
    for o, score in zip(oracles, (900_000, 900_000, 100_000), strict=True):
        pm.tx(pm.fn.revealEvaluation(task_id, 1, score, s), o)
    # Execute: anyone settles once the score is decided
    for o in oracles:
        pm.tx(pm.fn.settleEvaluation(task_id, 1, o.address), pm.buyers[0])
    # Assert: dissent is not slashable (F2): every revealer got its evaluation stake back
    assert [pm.mkt.stake(o.address) for o in oracles] == before
    assert [pm.mkt.reserved(o.address) for o in oracles] == reserved
    assert pm.fn.evaluationOf(task_id, 1, oracles[2].address).call() == [True, True, True, 100_000]
    pm.chain.expect_revert(
        pm.fn.settleEvaluation(task_id, 1, oracles[0].address), pm.buyers[0],
        "ModelMarketNothingToSettle", task_id, 1, oracles[0].address,
    )  # fmt: skip
    # Execute: submission 2, o2 commits and stays silent past the reveal deadline
    sub = pm.submit(task_id, pm.developers[0], "silent")
    commit(oracles[2], sub, 900_000)
    pm.chain.warp_past(pm.submission(task_id, sub)["revealDeadline"])
    receipt = pm.tx(pm.fn.settleEvaluation(task_id, sub, oracles[2].address), pm.buyers[0])
    # Assert
    (settled,) = pm.chain.events(pm.mm, receipt, "EvaluationSettled")
    assert (settled["released"], settled["slashed"]) == (0, slash)
    assert pm.mkt.stake(oracles[2].address) == before[2] - slash


def test_the_bounty_pays_the_first_passing_submission_in_submission_order(pm):
    # Prepare: submission 1 fails, 2 and 3 pass, 3 is decided before 2
    task_id, _ = pm.finished_task()
    params = pm.configure(task_id)
    d0, d1 = pm.developers
    pm.submit_final(task_id)
    pm.evaluate(task_id, 1, 700_000)
    assert pm.submit(task_id, d0, "rev2") == 2
    assert pm.submit(task_id, d1, "rev3") == 3
    pm.evaluate(task_id, 3, 850_000)
    # Execute / Assert: submission 2 still open, so nobody is owed the bounty yet
    pm.chain.expect_revert(pm.fn.claimBounty(task_id), d1, "ModelMarketNoBounty", task_id)
    pm.evaluate(task_id, 2, 820_000)
    before = pm.mkt.balance(d0.address)
    r = pm.tx(pm.fn.claimBounty(task_id), d1)  # anyone may trigger it
    (event,) = pm.chain.events(pm.mm, r, "BountyPaid")
    assert (event["submission"], event["developer"], event["amount"]) == (
        2,
        d0.address,
        params.bounty,
    )
    assert pm.mkt.balance(d0.address) == before + params.bounty
    pm.chain.expect_revert(pm.fn.claimBounty(task_id), d1, "ModelMarketNoBounty", task_id)
    # the requester cannot take back a bounty that was paid
    pm.chain.expect_revert(
        pm.fn.reclaim(task_id), pm.requester, "ModelMarketNotReclaimable", task_id
    )


def test_an_exhausted_task_returns_bounty_and_fees_to_the_requester(pm):
    task_id, _ = pm.finished_task()
    params = pm.configure(task_id, ProductParams(1, 800_000, 30 * E18, 2, 4 * E18, 60, 60))
    pm.submit_final(task_id)
    pm.chain.expect_revert(
        pm.fn.reclaim(task_id), pm.requester, "ModelMarketNotReclaimable", task_id
    )
    pm.evaluate(task_id, 1, 10_000)  # fails
    before = pm.mkt.balance(pm.requester.address)
    pm.tx(pm.fn.reclaim(task_id), pm.buyers[0])
    assert pm.mkt.balance(pm.requester.address) == before + params.escrow
    assert pm.mkt.balance(pm.mm.address) == 0


# --- auditors -------------------------------------------------------------------------------


def test_auditors_must_be_independent_registered_and_sign_for_this_chain_and_model(pm):
    # Prepare
    task_id, _ = pm.finished_task()
    params = pm.configure(task_id)
    pm.submit_final(task_id)
    pm.evaluate(task_id, 1, 900_000)
    actors = pm.mkt.actors
    dev = pm.developers[0]
    assert pm.submit(task_id, dev, "rev2") == 2
    relayer = pm.buyers[0]
    # requester, trainer, oracle: registered as auditors here, still conflicted for this task
    conflicted = [actors.requester, actors.trainers[0], actors.oracles[0]]
    for i, who in enumerate(conflicted):
        pm.tx(pm.fn.register(2, key(f"conflicted{i}")), who)
        pm.chain.expect_revert(
            pm.attest_fn(task_id, 1, who),
            relayer,
            "ModelMarketConflictOfInterest",
            task_id,
            who.address,
        )
    # a developer holds the Developer role, so its signature is no auditor's (one role per address)
    pm.chain.expect_revert(
        pm.attest_fn(task_id, 1, dev), relayer, "ModelMarketBadAttestation", dev.address
    )
    # unregistered signer, wrong chain id (recovers someone else), wrong digest
    pm.chain.expect_revert(
        pm.attest_fn(task_id, 1, relayer), relayer, "ModelMarketBadAttestation", relayer.address
    )
    aud0, aud1, aud2 = pm.auditors
    decoded = pm.chain.why(pm.attest_fn(task_id, 1, aud0, chain_id=pm.chain.chain_id + 1), relayer)
    assert decoded is not None and decoded.name == "ModelMarketBadAttestation"
    assert decoded.args[0].lower() != aud0.address.lower()
    pm.chain.expect_revert(
        pm.attest_fn(task_id, 1, aud0, digest=digest_of("other")),
        relayer,
        "ModelMarketDigestMismatch",
    )
    # approval needs M approving attestations
    pm.chain.expect_revert(
        pm.fn.approve(task_id, 1), pm.requester, "ModelMarketNotEnoughAttestations", 0, 0, 2
    )
    # Execute: two independent auditors attest (relayed); fees for the first M
    before = pm.mkt.balance(aud0.address)
    r = pm.tx(pm.attest_fn(task_id, 1, aud0), relayer)
    (ev,) = pm.chain.events(pm.mm, r, "Attested")
    assert (ev["auditor"], ev["approved"], ev["fee"]) == (aud0.address, True, params.auditor_fee)
    assert pm.mkt.balance(aud0.address) == before + params.auditor_fee
    pm.chain.expect_revert(
        pm.attest_fn(task_id, 1, aud0),
        relayer,
        "ModelMarketAlreadyAttested",
        task_id,
        1,
        aud0.address,
    )
    pm.chain.expect_revert(
        pm.fn.approve(task_id, 1), pm.requester, "ModelMarketNotEnoughAttestations"
    )
    pm.tx(pm.attest_fn(task_id, 1, aud1), relayer)
    pm.chain.expect_revert(pm.fn.approve(task_id, 1), relayer, "ModelMarketNotRequester", task_id,
                           relayer.address)  # fmt: skip
    # Assert
    pm.tx(pm.fn.approve(task_id, 1), pm.requester)
    assert pm.submission(task_id, 1)["approved"] is True
    assert pm.fn.approvingAuditors(task_id, 1).call() == [aud0.address, aud1.address]
    pm.chain.expect_revert(
        pm.attest_fn(task_id, 1, aud2), relayer, "ModelMarketAlreadyApproved", task_id
    )
    # unpaid fees: none left (M = 2 paid)
    pm.chain.expect_revert(
        pm.fn.reclaim(task_id), pm.requester, "ModelMarketNotReclaimable", task_id
    )


def test_a_rejection_blocks_approval_and_unpassed_models_cannot_be_attested(pm):
    task_id, _ = pm.finished_task()
    pm.configure(task_id)
    pm.submit_final(task_id)
    aud0, aud1, aud2 = pm.auditors
    relayer = pm.buyers[0]
    pm.chain.expect_revert(
        pm.attest_fn(task_id, 1, aud0), relayer, "ModelMarketNotPassed", task_id, 1
    )
    pm.evaluate(task_id, 1, 900_000)
    pm.tx(pm.attest_fn(task_id, 1, aud0), relayer)
    pm.tx(pm.attest_fn(task_id, 1, aud1), relayer)
    pm.tx(pm.attest_fn(task_id, 1, aud2, approved=False), relayer)
    pm.chain.expect_revert(
        pm.fn.approve(task_id, 1), pm.requester, "ModelMarketNotEnoughAttestations", 2, 1, 2
    )


# --- listings and sales ---------------------------------------------------------------------


def test_listing_needs_approval_and_the_committees_total_score(pm):
    task_id, tree = pm.finished_task()
    pm.configure(task_id)
    pm.submit_final(task_id)
    pm.evaluate(task_id, 1, 900_000)
    params = pm.listing_params(task_id).as_tuple()
    pm.chain.expect_revert(pm.fn.list(params), pm.requester, "ModelMarketNotApproved", task_id, 1)
    for a in pm.auditors[:2]:
        pm.tx(pm.attest_fn(task_id, 1, a), pm.requester)
    pm.tx(pm.fn.approve(task_id, 1), pm.requester)
    pm.chain.expect_revert(pm.fn.list(params), pm.requester, "ModelMarketNoTotalScore", task_id)
    o0 = pm.mkt.actors.oracles[0]
    pm.tx(pm.fn.attestTotalScore(task_id, 1_000_000), o0)
    pm.chain.expect_revert(
        pm.fn.attestTotalScore(task_id, 1), o0, "ModelMarketAlreadyVoted", task_id, o0.address
    )
    pm.chain.expect_revert(
        pm.fn.list(params), pm.requester, "ModelMarketNoTotalScore", task_id
    )  # 1/3 stake
    pm.tx(pm.fn.attestTotalScore(task_id, 1_000_000), pm.mkt.actors.oracles[1])
    good = list(params)
    for bad in ([*good[:8], 9000, 1000, 1, *good[11:]], [*good[:4], pm.chain.now() - 1, *good[5:]]):
        pm.chain.expect_revert(pm.fn.list(tuple(bad)), pm.requester, "ModelMarketInvalidListing")
    listing_id = pm.list(task_id)
    info = pm.listing(listing_id)
    assert (info["totalScore"], info["payoutRoot"], info["auditorCount"]) == (
        1_000_000, bytes.fromhex(tree.root[2:]), 2,
    )  # fmt: skip


def test_an_undelivered_sale_is_refunded_and_never_counts_as_revenue(pm):
    # Prepare
    task_id, _ = pm.approved_task()
    listing_id = pm.list(task_id)
    buyer = pm.buyers[0]
    before = pm.mkt.balance(buyer.address)
    sale_id = pm.buy(listing_id, buyer)
    assert pm.mkt.balance(buyer.address) == before - 10 * E18
    pm.chain.expect_revert(pm.fn.refund(sale_id), buyer, "ModelMarketTooEarly")
    pm.chain.expect_revert(
        pm.fn.refund(sale_id), pm.requester, "ModelMarketNotBuyer", pm.requester.address
    )
    pm.chain.expect_revert(
        pm.fn.deliver(sale_id, b"sealed"), buyer, "ModelMarketNotKeyHolder", buyer.address
    )
    # Execute: the key holder misses the deadline
    pm.chain.warp_past(pm.sale(sale_id)["deliverBy"])
    pm.chain.expect_revert(
        pm.fn.deliver(sale_id, b"sealed"), pm.requester, "ModelMarketDeadlinePassed"
    )
    r = pm.tx(pm.fn.refund(sale_id), buyer)
    # Assert
    assert pm.chain.events(pm.mm, r, "Refunded")[0]["amount"] == 10 * E18
    assert pm.mkt.balance(buyer.address) == before
    assert pm.sale(sale_id)["status"] == 3
    info = pm.listing(listing_id)
    assert (info["gross"], info["pending"]) == (0, 0)
    pm.chain.expect_revert(pm.fn.refund(sale_id), buyer, "ModelMarketWrongSaleStatus", sale_id, 3)
    pm.chain.expect_revert(pm.fn.refund(99), buyer, "ModelMarketUnknownSale", 99)


def test_deliver_records_the_envelope_in_its_event_and_only_its_hash_in_the_sale(pm):
    # Prepare
    from web3 import Web3

    task_id, _ = pm.approved_task()
    listing_id = pm.list(task_id)
    sale_id = pm.buy(listing_id, pm.buyers[0])
    most = pm.fn.MAX_SEALED_KEY().call()
    assert most == 1024
    # Execute / Assert: an empty or over-long envelope is refused, the sale stays paid
    for bad in (b"", b"\x01" * (most + 1)):
        pm.chain.expect_revert(
            pm.fn.deliver(sale_id, bad), pm.requester, "ModelMarketBadSealedKeyLength", len(bad),
            most,
        )  # fmt: skip
    assert pm.sale(sale_id)["status"] == 1 and pm.sale(sale_id)["sealedKeyHash"] == bytes(32)
    envelope = bytes(range(256)) * 4  # the longest accepted
    r = pm.tx(pm.fn.deliver(sale_id, envelope), pm.requester)
    (event,) = pm.chain.events(pm.mm, r, "Delivered")
    assert (event["saleId"], event["sealedKey"]) == (sale_id, envelope)
    assert event["sealedKeyHash"] == pm.sale(sale_id)["sealedKeyHash"] == Web3.keccak(envelope)
    assert pm.sale(sale_id)["status"] == 2


def test_the_model_market_views_have_exactly_the_abi_fields():
    import dataclasses

    from marketplace.chain import model_market_client as mmc
    from marketplace.chain.compiler import compile_contracts
    from marketplace.chain.views import snake

    abi = {e["name"]: e for e in compile_contracts()["ModelMarket"].abi if e["type"] == "function"}
    views = {"product": mmc.ProductInfo, "submission": mmc.SubmissionInfo,
             "listing": mmc.ListingInfo, "sale": mmc.SaleInfo}  # fmt: skip
    for function, view in views.items():
        (out,) = abi[function]["outputs"]
        names = [snake(c["name"]) for c in out["components"]]
        assert names == [f.name for f in dataclasses.fields(view)], function


def test_a_sale_after_the_listings_expiry_reverts(pm):
    task_id, _ = pm.approved_task()
    listing_id = pm.list(task_id, expiry=pm.chain.now() + 100)
    buyer = pm.buyers[0]
    sale_id = pm.buy(listing_id, buyer)
    pm.deliver(sale_id)
    expiry = pm.listing(listing_id)["expiry"]
    pm.chain.warp_past(expiry)
    pm.chain.expect_revert(
        pm.fn.buy(listing_id, key("late")), buyer, "ModelMarketListingExpired", listing_id, expiry
    )
    pm.chain.expect_revert(pm.fn.buy(7, key("x")), buyer, "ModelMarketUnknownListing", 7)
    pm.chain.expect_revert(pm.fn.buy(listing_id, b"\x00" * 32), buyer, "ModelMarketListingExpired")


def test_sales_stop_when_the_versions_contract_says_the_version_is_not_sellable(pm):
    task_id, _ = pm.approved_task()
    listing_id = pm.list(task_id, versions=pm.versions.address, version=2)
    buyer = pm.buyers[0]
    pm.buy(listing_id, buyer)  # sellable by default
    pm.tx(pm.versions.functions.setSellable(task_id, 2, False), pm.requester)
    pm.chain.expect_revert(
        pm.fn.buy(listing_id, key("b")), buyer, "ModelMarketVersionNotSellable", task_id, 2
    )


def test_royalty_claim_takes_only_leaves_of_the_listed_task_on_its_task_market(pm):
    # Prepare: a listed task with one delivered sale; the same rows as leaves of other domains
    from chainkit import payout_tree

    from marketplace.valuation.merkle import LeafDomain

    trainers = pm.mkt.actors.trainers[:2]

    def rows(ts):
        return [(t.address, 100 * E18, 500_000, 0) for t in ts]

    task_id, tree = pm.approved_task(rows, n=2)
    listing_id = pm.list(task_id)
    pm.deliver(pm.buy(listing_id, pm.buyers[0]))
    own = pm.mkt.domain(task_id)
    others = [
        LeafDomain(own.chain_id, pm.mm.address, task_id),  # ModelMarket's own address
        LeafDomain(own.chain_id, own.market, task_id + 1),
        LeafDomain(own.chain_id + 1, own.market, task_id),
    ]
    # Execute / Assert
    for other in others:
        foreign = payout_tree(rows(trainers), other)
        pm.chain.expect_revert(
            pm.claim_royalty_fn(listing_id, foreign, 0),
            pm.buyers[0],
            "ModelMarketInvalidRoyaltyClaim",
            listing_id,
            0,
        )
    pm.tx(pm.claim_royalty_fn(listing_id, tree, 0), pm.buyers[0])  # its TaskMarket leaf claims


def test_royalties_accrue_per_score_and_every_wei_of_the_trainer_share_is_accounted_for(pm):
    # Prepare: four trainers with distinct scores; one flagged with score 0
    scores = [1_000_000, 640_000, 333_333, 0]

    def rows(ts):
        return [
            (t.address, 100 * E18, s, 2 if s == 0 else 0) for t, s in zip(ts, scores, strict=True)
        ]

    task_id, tree = pm.approved_task(rows, n=4)
    total = sum(scores)
    price = 7_777_777_777_777_777_777  # odd amounts make every split round
    listing_id = pm.list(task_id, price=price)
    b0, b1 = pm.buyers
    mm_start = pm.mkt.balance(pm.mm.address)
    # Execute: sale 1 delivered; trainer 0 claims; two more sales; everyone claims
    pm.deliver(pm.buy(listing_id, b0))
    trainers = pm.mkt.actors.trainers[:4]
    t0_before = pm.mkt.balance(trainers[0].address)
    pm.tx(pm.claim_royalty_fn(listing_id, tree, 0), pm.buyers[0])  # anyone may claim for a leaf
    pm.chain.expect_revert(pm.claim_royalty_fn(listing_id, tree, 0), b0, "ModelMarketNothingDue")
    pm.deliver(pm.buy(listing_id, b1))
    pm.deliver(pm.buy(listing_id, b0))
    undelivered = pm.buy(listing_id, b1)  # paid, never delivered: no revenue
    # each sale is split on its own price: 80% trainers, 5% developer, 5% auditors, rest requester
    tr_cut, dev_cut, aud_cut = price * 8000 // 10_000, price * 500 // 10_000, price * 500 // 10_000
    trainer_gross = 3 * tr_cut
    assert pm.fn.trainerGross(listing_id).call() == trainer_gross
    paid = []
    for i in range(3):
        before = pm.mkt.balance(trainers[i].address)
        pm.tx(pm.claim_royalty_fn(listing_id, tree, i), pm.requester)
        paid.append(pm.mkt.balance(trainers[i].address) - before)
    # the flagged leaf earns nothing; a forged leaf does not prove
    pm.chain.expect_revert(
        pm.claim_royalty_fn(listing_id, tree, 3),
        b0,
        "ModelMarketInvalidRoyaltyClaim",
        listing_id,
        3,
    )
    e = tree.entries[1]
    from chainkit import proof_bytes

    forged = pm.fn.claimRoyalty(
        listing_id, e.index, e.account, e.amount, 900_000, 0, proof_bytes(tree, 1)
    )
    pm.chain.expect_revert(forged, b0, "ModelMarketInvalidRoyaltyClaim", listing_id, 1)
    # Assert: each trainer got exactly floor(trainerGross * score / total)
    t0_total = pm.mkt.balance(trainers[0].address) - t0_before
    assert t0_total == trainer_gross * scores[0] // total
    for i in (1, 2):
        assert paid[i] == trainer_gross * scores[i] // total
    # requester, developer (= requester for submission 1) and auditors take their shares
    req_before = pm.mkt.balance(pm.requester.address)
    pm.tx(pm.fn.claimShare(listing_id), pm.requester)
    aud_pool = 3 * aud_cut
    req_expected = 3 * (price - tr_cut - dev_cut - aud_cut) + 3 * dev_cut  # also the developer
    assert pm.mkt.balance(pm.requester.address) - req_before == req_expected
    for a in pm.auditors[:2]:
        before = pm.mkt.balance(a.address)
        pm.tx(pm.fn.claimShare(listing_id), a)
        assert pm.mkt.balance(a.address) - before == aud_pool // 2
    pm.chain.expect_revert(pm.fn.claimShare(listing_id), pm.auditors[2], "ModelMarketNothingDue")
    # the trainers' rounding dust goes back to the requester with the sweep, to the wei
    claimed = sum(trainer_gross * s // total for s in scores[:3])
    dust = trainer_gross - claimed
    assert 0 <= dust < 4
    pm.chain.expect_revert(pm.fn.sweepRoyalties(listing_id), b0, "ModelMarketTooEarly")
    pm.chain.warp_past(pm.listing(listing_id)["royaltyDeadline"])
    pm.tx(pm.fn.refund(undelivered), b1)
    r = pm.tx(pm.fn.sweepRoyalties(listing_id), b0)
    # with the auditors' split remainder (aud_pool % 2), which no auditor could claim
    assert pm.chain.events(pm.mm, r, "RoyaltiesSwept")[0]["amount"] == dust + aud_pool % 2
    info = pm.listing(listing_id)
    assert info["trainerClaimed"] == trainer_gross  # Σ paid to trainers + dust = trainer share
    pm.chain.expect_revert(
        pm.claim_royalty_fn(listing_id, tree, 1), b0, "ModelMarketDeadlinePassed"
    )
    pm.chain.expect_revert(
        pm.fn.sweepRoyalties(listing_id), b0, "ModelMarketAlreadySwept", listing_id
    )
    # nothing of the sales is left in the contract: every wei went to someone
    assert pm.mkt.balance(pm.mm.address) == mm_start


def test_product_calls_out_of_order_or_out_of_range_are_refused(pm):
    # Prepare: a task still training
    from chainkit import TaskSpec

    req, dev = pm.requester, pm.developers[0]
    task_id = pm.mkt.create(TaskSpec())
    good = ProductParams(2, 800_000, 0, 0, 0, 60, 60)
    # Assert
    pm.chain.expect_revert(
        pm.fn.configure(task_id, good.as_tuple()), dev, "ModelMarketNotRequester", task_id,
        dev.address,
    )  # fmt: skip
    for bad in ((0, 1, 0, 0, 0, 60, 60), (2, 1_000_001, 0, 0, 0, 60, 60), (2, 1, 0, 9, 0, 60, 60),
                (2, 1, 0, 0, 0, 0, 60)):  # fmt: skip
        pm.chain.expect_revert(pm.fn.configure(task_id, bad), req, "ModelMarketInvalidParams")
    pm.chain.expect_revert(
        pm.fn.submit(task_id, "c", digest_of("c")), dev, "ModelMarketNotConfigured", task_id
    )
    pm.tx(pm.fn.configure(task_id, good.as_tuple()), req)
    pm.chain.expect_revert(pm.fn.submitFinalModel(task_id, "f"), req, "ModelMarketWrongTaskPhase")
    pm.chain.expect_revert(
        pm.fn.attestTotalScore(task_id, 5), pm.mkt.actors.oracles[0], "ModelMarketWrongTaskPhase"
    )
    task_id = pm.mkt.create(TaskSpec())
    pm.tx(pm.mkt.fn.cancel(task_id), req)
    pm.chain.expect_revert(
        pm.fn.configure(task_id, good.as_tuple()), req, "ModelMarketWrongTaskPhase", task_id, 7
    )


def test_a_finished_task_without_a_posted_final_model_cannot_be_submitted(pm):
    trainers = pm.mkt.actors.trainers[:2]
    task_id, _ = pm.mkt.finalized_task(
        trainers, lambda ts: [(t.address, 100 * E18, 500_000, 0) for t in ts]
    )
    pm.mkt.open_claims(task_id)
    pm.configure(task_id)
    pm.chain.expect_revert(
        pm.fn.submitFinalModel(task_id, "f"), pm.requester, "ModelMarketNoFinalModel", task_id
    )
    o0 = pm.mkt.actors.oracles[0]
    outsider = pm.buyers[0]
    pm.chain.expect_revert(
        pm.fn.attestTotalScore(task_id, 1), outsider, "ModelMarketNotCommitteeMember", task_id,
        outsider.address,
    )  # fmt: skip
    pm.chain.expect_revert(pm.fn.attestTotalScore(task_id, 0), o0, "ModelMarketInvalidParams")
    pm.chain.expect_revert(pm.fn.claimBounty(task_id), outsider, "ModelMarketNoBounty", task_id)
    pm.chain.expect_revert(pm.fn.deliver(5, b"k"), outsider, "ModelMarketUnknownSale", 5)


def test_every_custom_error_of_the_product_contracts_is_asserted():
    import re
    from pathlib import Path

    from marketplace.chain.compiler import compile_contracts

    artifacts = compile_contracts()
    errors = {
        item["name"]
        for name in ("ModelMarket", "EfficacyMarket")
        for item in artifacts[name].abi
        if item["type"] == "error" and item["name"].startswith(name)
    }
    here = Path(__file__).resolve().parent
    sources = "\n".join(
        p.read_text()
        for p in (
            here / "test_model_market.py",
            here / "test_efficacy_market.py",
            here / "test_royalty_withdrawal.py",
        )
    )
    asserted = set(re.findall(r'"((?:ModelMarket|EfficacyMarket)\w+)"', sources))
    # Defensive only: TaskMarket refuses fee-on-transfer tokens at createTask, so a task's token
    # cannot be one; EfficacyMarket's check is exercised by its own test below.
    unreachable = {"ModelMarketFeeOnTransfer"}
    assert sorted(errors - asserted - unreachable) == []


def test_tiny_prices_never_shrink_a_pool_so_claims_and_the_sweep_always_go_through(pm):
    # Prepare: 1-wei sales split 33.33% three ways, where rounding a cumulative gross would
    # shrink the trainers' part between sales (and lock the sweep)
    task_id, tree = pm.approved_task()
    listing_id = pm.list(task_id, price=1, requester_bps=3333, developer_bps=3333, auditor_bps=3333)
    start = pm.mkt.balance(pm.mm.address)
    # Execute
    for i in range(12):
        pm.deliver(pm.buy(listing_id, pm.buyers[i % 2]))
        accrued, paid = pm.fn.royaltyOf(listing_id, 0, tree.entries[0].score_ppm).call()
        assert accrued >= paid
        if accrued > paid:
            pm.tx(pm.claim_royalty_fn(listing_id, tree, 0), pm.requester)
        assert pm.listing(listing_id)["trainerClaimed"] <= pm.fn.trainerGross(listing_id).call()
    pm.tx(pm.fn.claimShare(listing_id), pm.requester)
    pm.chain.warp_past(pm.listing(listing_id)["royaltyDeadline"])
    pm.tx(pm.fn.sweepRoyalties(listing_id), pm.buyers[0])
    # Assert: every wei of the 12 sales left the contract
    info = pm.listing(listing_id)
    assert info["gross"] == 12
    assert info["trainerClaimed"] == info["trainerPool"] == 12 * (1 * 1 // 10_000)  # 0.01% of 1 wei
    for a in pm.auditors[:2]:
        pm.chain.expect_revert(pm.fn.claimShare(listing_id), a, "ModelMarketNothingDue")
    assert pm.mkt.balance(pm.mm.address) == start
