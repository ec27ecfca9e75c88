"""DataSourcing on Anvil: sealed offers (from eligible trainers only, capped, bonded), the
committee's selection by quorum, the join gate, threshold payment claims (an unflagged row of the
task's final payout table, or trained rounds if scoring failed), refunds, and budget and bond
conservation at every step."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from chainkit import (
    E18,
    Chain,
    Market,
    TaskSpec,
    Vote,
    new_account,
    payout_tree,
    proof_bytes,
    root_bytes,
)
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from marketplace.chain.deploy import ContractRecord, Deployment
from marketplace.chain.sourcing_client import (
    MAX_OFFERS,
    MIN_SELECTION_WINDOW,
    DataSourcingClient,
    RequestParams,
    SelectionTree,
    offer_commitment,
    selection_commitment,
)
from marketplace.errors import TransactionRevertedError
from marketplace.sourcing import select
from marketplace.valuation.flags import Flag
from marketplace.valuation.merkle import PayoutTree

MAX = 2**256 - 1
BUDGET = 300 * E18
BOND = 2 * E18  # each offer's bond (the protocol minimum is one token)
ASKS = (60 * E18, 50 * E18, 90 * E18, 40 * E18)  # four data owners: three win, one is too dear
VALUES = (300_000, 300_000, 300_000, 200_000)  # predicted values (ppm) the committee computed
CID = "bafy-sketch-{}"
NO_LEAF = (0, 0, 0, 0, [])  # claimPayment's leaf arguments when scoring failed (ignored)


@pytest.fixture(scope="session")
def ds(chain: Chain, mkt: Market) -> Contract:
    """DataSourcing deployed over the session's market; the requester (its budgets) and every
    trainer and outsider (their offer bonds) approved it."""
    contract = chain.deploy("DataSourcing", mkt.actors.deployer, mkt.market.address)
    for who in (mkt.actors.requester, *mkt.actors.trainers, *mkt.actors.outsiders):
        chain.tx(mkt.token.functions.approve(contract.address, MAX), who)
    return contract


def _schedule(chain: Chain) -> dict[str, int]:
    now = chain.now()
    return {
        "offer": now + 100,
        "reveal": now + 200,
        "commit": now + 200 + MIN_SELECTION_WINDOW,  # the shortest selection window allowed
        "sreveal": now + 300 + MIN_SELECTION_WINDOW,
        "claim": now + 100_000,
    }


def _params(mkt: Market, task_id: int, when: dict[str, int], **over) -> tuple:
    p = {
        "task_id": task_id,
        "token": mkt.token.address,
        "budget": BUDGET,
        "offer_bond": BOND,
        "schema_cid": "bafy-request",
        "validation_commitment": Web3.keccak(text="validation set"),
        "oracles": tuple(o.address for o in mkt.actors.oracles),
        "quorum": 2,
        "offer_deadline": when["offer"],
        "reveal_deadline": when["reveal"],
        "select_commit_deadline": when["commit"],
        "select_reveal_deadline": when["sreveal"],
        "claim_deadline": when["claim"],
    }
    p.update(over)
    return RequestParams(**p).as_tuple()


def _request(chain: Chain, mkt: Market, ds: Contract, spec: TaskSpec | None = None):
    task_id = mkt.create(spec or TaskSpec(rounds=2, min_trainers=2, max_trainers=3))
    when = _schedule(chain)
    receipt = chain.tx(
        ds.functions.createRequest(_params(mkt, task_id, when)), mkt.actors.requester
    )
    (event,) = chain.events(ds, receipt, "RequestCreated")
    return task_id, int(event["requestId"]), when


def _offer(chain: Chain, ds: Contract, rid: int, owner: LocalAccount, i: int) -> None:
    salt = Web3.keccak(text=f"salt {i}")
    c = offer_commitment(rid, owner.address, ASKS[i], 100 + i, CID.format(i), salt)
    chain.tx(ds.functions.commitOffer(rid, c), owner)


def _reveal_offer(chain: Chain, ds: Contract, rid: int, owner: LocalAccount, i: int) -> None:
    salt = Web3.keccak(text=f"salt {i}")
    chain.tx(ds.functions.revealOffer(rid, ASKS[i], 100 + i, CID.format(i), salt), owner)


def _selection(rid: int, owners: list[LocalAccount]) -> SelectionTree:
    sel = select(list(VALUES), list(ASKS), BUDGET)
    return SelectionTree(rid, [owners[i].address for i in sel.winners], list(sel.payments))


def _vote(
    chain: Chain,
    ds: Contract,
    rid: int,
    oracle: LocalAccount,
    tree,
    salt: bytes,
    report="bafy-report",
):
    root, total = tree.root_bytes(), tree.total
    chain.tx(
        ds.functions.commitSelection(
            rid, selection_commitment(rid, oracle.address, root, total, report, salt)
        ),
        oracle,
    )


def _escrow(mkt: Market, ds: Contract) -> int:
    return mkt.balance(ds.address)


def _info(ds: Contract, rid: int) -> dict:
    """``request(rid)`` by field name."""
    names = [o["name"] for o in ds.functions.request(rid).abi["outputs"][0]["components"]]
    return dict(zip(names, ds.functions.request(rid).call(), strict=True))


def _score(mkt: Market, task_id: int, rows: list[tuple[str, int, int, int]]) -> PayoutTree:
    """All three oracles reveal the payout table ``rows``: the task is Finalized (dispute window
    open)."""
    tree = payout_tree(rows, mkt.domain(task_id))
    vote = Vote(root_bytes(tree), "bafy-report", b"\x01" * 32)
    mkt.score(task_id, {k: replace(vote, salt=bytes([k + 1]) * 32) for k in range(3)})
    return tree


def _claim(ds: Contract, rid: int, tree: PayoutTree, index: int, **forged):
    """``claimPayment`` with row ``index`` of ``tree`` and its proof (fields overridable)."""
    e = replace(tree.entries[index], **forged)
    return ds.functions.claimPayment(
        rid, e.index, e.amount, e.score_ppm, e.flags, proof_bytes(tree, index)
    )


def _registered(chain: Chain, mkt: Market, ds: Contract):
    """A final selection whose three winners registered and whose unspent budget was refunded."""
    task_id, rid, when, owners, tree = _selected(chain, mkt, ds)
    winners = [o for o in owners if o.address in {w for w, _ in tree.rows}]
    for w in winners:
        payment, proof = tree.proof_of(w.address)
        chain.tx(ds.functions.registerWinner(rid, payment, proof), w)
    chain.tx(ds.functions.refund(rid), mkt.actors.outsiders[0])
    return task_id, rid, when, owners, winners, tree


def _selected(chain: Chain, mkt: Market, ds: Contract):
    """A request with three revealed offers and a final selection of two winners."""
    task_id, rid, when = _request(chain, mkt, ds)
    owners = mkt.actors.trainers[:4]
    for o in mkt.actors.oracles:
        chain.tx(ds.functions.acceptSeat(rid), o)
    for i, owner in enumerate(owners):
        _offer(chain, ds, rid, owner, i)
    chain.warp_past(when["offer"])
    for i, owner in enumerate(owners):
        _reveal_offer(chain, ds, rid, owner, i)
    chain.warp_past(when["reveal"])
    tree = _selection(rid, owners)
    salts = [bytes([k + 1]) * 32 for k in range(3)]
    for k in range(2):
        _vote(chain, ds, rid, mkt.actors.oracles[k], tree, salts[k])
    chain.warp_past(when["commit"])
    for k in range(2):
        chain.tx(
            ds.functions.revealSelection(
                rid, tree.root_bytes(), tree.total, "bafy-report", salts[k]
            ),
            mkt.actors.oracles[k],
        )
    return task_id, rid, when, owners, tree


def test_offer_commitment_matches_the_library(chain: Chain, mkt: Market, ds: Contract) -> None:
    salt = b"\x07" * 32
    owner = mkt.actors.trainers[0].address
    onchain = ds.functions.offerCommitment(1, owner, 5, 6, "bafy", salt).call()
    assert onchain == offer_commitment(1, owner, 5, 6, "bafy", salt)
    onchain = ds.functions.selectionCommitment(1, owner, b"\x01" * 32, 9, "r", salt).call()
    assert onchain == selection_commitment(1, owner, b"\x01" * 32, 9, "r", salt)


def test_createRequest_escrows_budget_and_checks_inputs(
    chain: Chain, mkt: Market, ds: Contract
) -> None:
    task_id = mkt.create(TaskSpec())
    when = _schedule(chain)
    req = mkt.actors.requester
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when)),
        mkt.actors.outsiders[0],
        "DataSourcingNotTaskRequester",
    )
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when, budget=0)),
        req,
        "DataSourcingBadBudget",
        0,
    )
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when, quorum=4)),
        req,
        "DataSourcingBadCommittee",
    )
    dup = (mkt.actors.oracles[0].address,) * 2
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when, oracles=dup, quorum=1)),
        req,
        "DataSourcingBadCommittee",
    )
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when, reveal_deadline=when["offer"])),
        req,
        "DataSourcingBadSchedule",
    )
    # a selection window too short for the committee to try MAX_OFFERS sketches
    short = when["reveal"] + MIN_SELECTION_WINDOW - 1
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when, select_commit_deadline=short)),
        req,
        "DataSourcingBadSchedule",
    )
    # an offer bond under one whole token of the request's token
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when, offer_bond=E18 - 1)),
        req,
        "DataSourcingBondBelowMinimum",
        E18 - 1,
        E18,
    )
    six = chain.deploy("SixDecimalToken", mkt.actors.deployer)
    assert ds.functions.minOfferBond(six.address).call() == 10**6  # one whole token
    assert ds.functions.minOfferBond(mkt.token.address).call() == E18
    # a token that keeps a fee would leave the books above the balance: refused
    fot = chain.deploy("FeeOnTransferToken", mkt.actors.deployer)
    chain.tx(fot.functions.mint(req.address, BUDGET), mkt.actors.deployer)
    chain.tx(fot.functions.approve(ds.address, MAX), req)
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when, token=fot.address)),
        req,
        "DataSourcingFeeOnTransfer",
        BUDGET,
        BUDGET - BUDGET // 100,
    )
    before = mkt.balance(req.address)
    chain.tx(ds.functions.createRequest(_params(mkt, task_id, when)), req)
    assert mkt.balance(req.address) == before - BUDGET
    assert _escrow(mkt, ds) == BUDGET
    chain.expect_revert(
        ds.functions.createRequest(_params(mkt, task_id, when)),
        req,
        "DataSourcingTaskAlreadySourced",
        task_id,
    )
    chain.expect_revert(ds.functions.acceptSeat(99), req, "DataSourcingUnknownRequest", 99)


def test_offers_are_sealed_until_revealed_and_bound_to_their_commitment(
    chain: Chain, mkt: Market, ds: Contract
) -> None:
    _, rid, when = _request(chain, mkt, ds)
    owner, other = mkt.actors.trainers[0], mkt.actors.trainers[1]
    _offer(chain, ds, rid, owner, 0)
    chain.expect_revert(
        ds.functions.commitOffer(rid, b"\x00" * 32), other, "DataSourcingEmptyCommitment"
    )
    chain.expect_revert(
        ds.functions.commitOffer(rid, b"\x01" * 32), owner, "DataSourcingAlreadyCommitted"
    )
    assert ds.functions.offer(rid, owner.address).call() == [0, 0]  # nothing public yet
    salt = Web3.keccak(text="salt 0")
    reveal = ds.functions.revealOffer(rid, ASKS[0], 100, CID.format(0), salt)
    chain.expect_revert(reveal, owner, "DataSourcingWrongTime", rid, when["offer"])
    chain.warp_past(when["offer"])
    chain.expect_revert(ds.functions.commitOffer(rid, b"\x01" * 32), other, "DataSourcingWrongTime")
    # a copier cannot reveal the owner's commitment, and a changed ask does not match
    chain.expect_revert(reveal, other, "DataSourcingRevealMismatch", rid, other.address)
    cheaper = ds.functions.revealOffer(rid, ASKS[0] - 1, 100, CID.format(0), salt)
    chain.expect_revert(cheaper, owner, "DataSourcingRevealMismatch", rid, owner.address)
    chain.tx(reveal, owner)
    assert ds.functions.offer(rid, owner.address).call() == [ASKS[0], 100]
    chain.expect_revert(reveal, owner, "DataSourcingAlreadyRevealed", rid, owner.address)


def _trainer(chain: Chain, mkt: Market, ds: Contract, seed: int, stake: int) -> LocalAccount:
    """A fresh account with gas and tokens, registered as a trainer with ``stake``, that
    approved the registry and DataSourcing."""
    acct = new_account(seed)
    d = mkt.actors.deployer
    tx = {"to": acct.address, "value": E18, "gas": 21_000, "chainId": chain.chain_id,
          "nonce": chain.w3.eth.get_transaction_count(d.address, "pending"),
          "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}  # fmt: skip
    chain.w3.eth.wait_for_transaction_receipt(
        chain.w3.eth.send_raw_transaction(d.sign_transaction(tx).raw_transaction)
    )
    chain.tx(mkt.token.functions.mint(acct.address, 1_000 * E18), d)
    chain.tx(mkt.token.functions.approve(mkt.registry.address, MAX), acct)
    chain.tx(mkt.token.functions.approve(ds.address, MAX), acct)
    key = Web3.keccak(text=f"x25519 extra {seed}")
    chain.tx(mkt.registry.functions.register(1, key, stake), acct)
    return acct


def test_only_a_trainer_that_could_join_may_offer(chain: Chain, mkt: Market, ds: Contract) -> None:
    """The Sybil flood replayed: an unregistered account, an account of another role, a trainer
    with no stake, one whose stake is reserved by another task and one below the task's
    reputation floor are each refused with a named error; nothing moves."""
    spec = TaskSpec(rounds=2, min_trainers=2, max_trainers=3, min_reputation_ppm=400_000)
    task_id, rid, _ = _request(chain, mkt, ds, spec)
    c = b"\x01" * 32
    escrow = _escrow(mkt, ds)
    stranger = mkt.actors.outsiders[0]  # funded, approved, never registered
    chain.expect_revert(
        ds.functions.commitOffer(rid, c), stranger, "DataSourcingNotTrainer", rid, stranger.address
    )
    oracle = mkt.actors.oracles[0]  # registered, but as an oracle: it cannot join as a trainer
    chain.expect_revert(
        ds.functions.commitOffer(rid, c), oracle, "DataSourcingNotTrainer", rid, oracle.address
    )
    broke = _trainer(chain, mkt, ds, 1, 0)  # a zero-stake trainer
    chain.expect_revert(
        ds.functions.commitOffer(rid, c), broke, "DataSourcingStakeTooLow", rid, broke.address,
        0, 50 * E18,
    )  # fmt: skip
    # a task asking 51 tokens of stake and more reputation than a newcomer's 50 %: a trainer
    # whose stake another task holds (100 staked, 50 reserved by joining the first task) ...
    busy = mkt.actors.trainers[7]
    mkt.join(task_id, [busy])
    _, rid2, _ = _request(chain, mkt, ds, TaskSpec(min_stake=51 * E18, min_reputation_ppm=600_000))
    chain.expect_revert(
        ds.functions.commitOffer(rid2, c), busy, "DataSourcingStakeTooLow", rid2, busy.address,
        50 * E18, 51 * E18,
    )  # fmt: skip
    # ... and a newcomer with its stake free
    owner = mkt.actors.trainers[0]
    chain.expect_revert(
        ds.functions.commitOffer(rid2, c), owner, "DataSourcingReputationTooLow", rid2,
        owner.address, 500_000, 600_000,
    )  # fmt: skip
    assert _escrow(mkt, ds) == escrow + BUDGET  # the new budget, no bond
    assert [_info(ds, r)["offerCount"] for r in (rid, rid2)] == [0, 0]
    # an eligible trainer offers, and its bond is pulled
    bal = mkt.balance(owner.address)
    chain.tx(ds.functions.commitOffer(rid, c), owner)
    assert mkt.balance(owner.address) == bal - BOND
    assert _escrow(mkt, ds) == escrow + BUDGET + BOND
    info = _info(ds, rid)
    assert (info["offerCount"], info["bondsHeld"], info["offerBond"]) == (1, BOND, BOND)
    assert (info["minStake"], info["minReputationPpm"]) == (50 * E18, 400_000)


def test_a_request_takes_at_most_max_offers(chain: Chain, mkt: Market, ds: Contract) -> None:
    """The (MAX_OFFERS + 1)-th offer is refused: a flood cannot outgrow what the committee's
    collection budget fetches in time. Every capped offer holds its bond."""
    assert ds.functions.MAX_OFFERS().call() == MAX_OFFERS == 64
    assert ds.functions.MIN_SELECTION_WINDOW().call() == MIN_SELECTION_WINDOW
    owners = list(mkt.actors.trainers)
    owners += [_trainer(chain, mkt, ds, 100 + k, 50 * E18) for k in range(MAX_OFFERS + 1 - 8)]
    # the request after the ~300 set-up transactions: the Hardhat node moves its clock a second
    # per block, which would close a 100 s offer window first
    _, rid, _ = _request(chain, mkt, ds)
    escrow = _escrow(mkt, ds)
    for k, owner in enumerate(owners[:MAX_OFFERS]):
        chain.tx(ds.functions.commitOffer(rid, Web3.keccak(text=f"offer {k}")), owner)
    last = owners[MAX_OFFERS]
    chain.expect_revert(
        ds.functions.commitOffer(rid, Web3.keccak(text="one too many")), last,
        "DataSourcingOffersFull", rid, MAX_OFFERS,
    )  # fmt: skip
    info = _info(ds, rid)
    assert (info["offerCount"], info["bondsHeld"]) == (MAX_OFFERS, MAX_OFFERS * BOND)
    assert _escrow(mkt, ds) == escrow + MAX_OFFERS * BOND


def test_a_revealed_offer_gets_its_bond_back_and_an_unrevealed_one_forfeits_it(
    chain: Chain, mkt: Market, ds: Contract
) -> None:
    """Commits that never reveal cannot fill the cap for free: their bonds go to the requester
    once the reveal deadline has passed; a revealed offer's bond returns at its reveal. The
    escrow is budget + bonds held at every step."""
    _, rid, when = _request(chain, mkt, ds)
    honest, ghost1, ghost2 = mkt.actors.trainers[:3]
    requester = mkt.actors.requester.address
    for i, owner in enumerate((honest, ghost1, ghost2)):
        _offer(chain, ds, rid, owner, i)
    assert _escrow(mkt, ds) == BUDGET + 3 * BOND
    chain.expect_revert(  # reveals may still come: nothing is forfeit yet
        ds.functions.forfeitBonds(rid), mkt.actors.outsiders[0], "DataSourcingWrongTime", rid,
        when["reveal"],
    )  # fmt: skip
    chain.warp_past(when["offer"])
    bal = mkt.balance(honest.address)
    receipt = chain.tx(
        ds.functions.revealOffer(rid, ASKS[0], 100, CID.format(0), Web3.keccak(text="salt 0")),
        honest,
    )
    assert chain.events(ds, receipt, "OfferBondReturned") == [
        {"requestId": rid, "owner": honest.address, "amount": BOND}
    ]
    assert mkt.balance(honest.address) == bal + BOND
    assert _escrow(mkt, ds) == BUDGET + 2 * BOND
    assert _info(ds, rid)["bondsHeld"] == 2 * BOND
    chain.warp_past(when["reveal"])
    chain.expect_revert(  # too late to reveal now
        ds.functions.revealOffer(rid, ASKS[1], 101, CID.format(1), Web3.keccak(text="salt 1")),
        ghost1, "DataSourcingWrongTime", rid, when["reveal"],
    )  # fmt: skip
    before = mkt.balance(requester)
    receipt = chain.tx(ds.functions.forfeitBonds(rid), mkt.actors.outsiders[0])  # anyone
    assert chain.events(ds, receipt, "OfferBondsForfeited") == [
        {"requestId": rid, "offers": 2, "amount": 2 * BOND}
    ]
    assert mkt.balance(requester) == before + 2 * BOND
    assert _escrow(mkt, ds) == BUDGET
    assert _info(ds, rid)["bondsHeld"] == 0
    chain.expect_revert(
        ds.functions.forfeitBonds(rid), mkt.actors.outsiders[0], "DataSourcingNoBondsToForfeit",
        rid,
    )  # fmt: skip
    # the budget is untouched by the bonds: a request without quorum still refunds it whole
    chain.warp_past(when["sreveal"])
    chain.tx(ds.functions.cancel(rid), mkt.actors.outsiders[0])
    assert _escrow(mkt, ds) == 0


def test_zero_sample_offer_is_refused(chain: Chain, mkt: Market, ds: Contract) -> None:
    _, rid, when = _request(chain, mkt, ds)
    owner = mkt.actors.trainers[0]
    salt = b"\x05" * 32
    chain.tx(
        ds.functions.commitOffer(rid, offer_commitment(rid, owner.address, 1, 0, "c", salt)), owner
    )
    chain.warp_past(when["offer"])
    chain.expect_revert(
        ds.functions.revealOffer(rid, 1, 0, "c", salt), owner, "DataSourcingZeroSamples"
    )


def test_selection_needs_accepted_seats_and_quorum(chain: Chain, mkt: Market, ds: Contract) -> None:
    _, rid, when = _request(chain, mkt, ds)
    o0, o1, o2 = mkt.actors.oracles
    outsider = mkt.actors.outsiders[0]
    chain.expect_revert(
        ds.functions.acceptSeat(rid), outsider, "DataSourcingNotOracle", rid, outsider.address
    )
    chain.tx(ds.functions.acceptSeat(rid), o0)
    chain.tx(ds.functions.acceptSeat(rid), o1)
    chain.expect_revert(ds.functions.acceptSeat(rid), o0, "DataSourcingSeatAlreadyAccepted")
    tree = _selection(rid, mkt.actors.trainers[:4])
    c = selection_commitment(rid, o0.address, tree.root_bytes(), tree.total, "r", b"\x01" * 32)
    chain.expect_revert(ds.functions.commitSelection(rid, c), o0, "DataSourcingWrongTime")
    chain.warp_past(when["reveal"])
    chain.expect_revert(
        ds.functions.commitSelection(rid, c), o2, "DataSourcingSeatNotAccepted", rid, o2.address
    )
    chain.expect_revert(
        ds.functions.commitSelection(rid, b"\x00" * 32), o0, "DataSourcingEmptyCommitment"
    )
    chain.tx(ds.functions.commitSelection(rid, c), o0)
    chain.expect_revert(ds.functions.commitSelection(rid, c), o0, "DataSourcingAlreadyCommitted")
    over = selection_commitment(rid, o1.address, tree.root_bytes(), BUDGET + 1, "r", b"\x02" * 32)
    chain.tx(ds.functions.commitSelection(rid, over), o1)
    chain.warp_past(when["commit"])
    reveal0 = ds.functions.revealSelection(rid, tree.root_bytes(), tree.total, "r", b"\x01" * 32)
    chain.expect_revert(
        ds.functions.revealSelection(rid, tree.root_bytes(), tree.total, "r", b"\x09" * 32),
        o0,
        "DataSourcingRevealMismatch",
    )
    receipt = chain.tx(reveal0, o0)
    assert chain.events(ds, receipt, "SelectionFinalized") == []  # one vote of a quorum of two
    chain.expect_revert(reveal0, o0, "DataSourcingAlreadyRevealed")
    chain.expect_revert(
        ds.functions.revealSelection(rid, tree.root_bytes(), BUDGET + 1, "r", b"\x02" * 32),
        o1,
        "DataSourcingSelectionOverBudget",
        BUDGET + 1,
        BUDGET,
    )
    # no quorum: winners cannot register, and after the window anyone cancels for a full refund
    payment, proof = tree.proof_of(mkt.actors.trainers[0].address)
    chain.expect_revert(
        ds.functions.registerWinner(rid, payment, proof),
        mkt.actors.trainers[0],
        "DataSourcingNotSelected",
    )
    chain.expect_revert(ds.functions.cancel(rid), outsider, "DataSourcingNotCancellable", rid)
    chain.warp_past(when["sreveal"])
    before = mkt.balance(mkt.actors.requester.address)
    chain.tx(ds.functions.cancel(rid), outsider)
    assert mkt.balance(mkt.actors.requester.address) == before + BUDGET
    assert _escrow(mkt, ds) == 0
    chain.expect_revert(ds.functions.cancel(rid), outsider, "DataSourcingNotCancellable", rid)
    chain.expect_revert(ds.functions.refund(rid), outsider, "DataSourcingNotSelected", rid)


def test_gate_admits_registered_winners_only(chain: Chain, mkt: Market, ds: Contract) -> None:
    task_id, rid, _, owners, tree = _selected(chain, mkt, ds)
    info = ds.functions.request(rid).call()
    assert info[8] == tree.root_bytes() and info[6] == tree.total  # selectionRoot, selectedTotal
    winners = [o for o in owners if o.address in {w for w, _ in tree.rows}]
    loser = next(o for o in owners if o not in winners)
    assert len(winners) == 3 and loser == owners[2]
    assert not ds.functions.canJoin(task_id, winners[0].address).call()  # not registered yet
    for w in winners:
        payment, proof = tree.proof_of(w.address)
        chain.tx(ds.functions.registerWinner(rid, payment, proof), w)
        assert ds.functions.canJoin(task_id, w.address).call()
    payment, proof = tree.proof_of(winners[0].address)
    chain.expect_revert(
        ds.functions.registerWinner(rid, payment, proof),
        winners[0],
        "DataSourcingAlreadyRegistered",
    )
    chain.expect_revert(
        ds.functions.registerWinner(rid, payment, proof),
        loser,
        "DataSourcingBadProof",
        rid,
        loser.address,
    )
    assert not ds.functions.canJoin(task_id, loser.address).call()
    assert not ds.functions.canJoin(task_id, mkt.actors.outsiders[0].address).call()
    assert not ds.functions.canJoin(task_id + 1, winners[0].address).call()  # another task


def test_winners_are_paid_their_threshold_after_the_rounds_and_budget_is_conserved(
    chain: Chain, mkt: Market, ds: Contract
) -> None:
    task_id, rid, when, owners, tree = _selected(chain, mkt, ds)
    requester = mkt.actors.requester.address
    winners = [o for o in owners if o.address in {w for w, _ in tree.rows}]
    for w in winners:
        payment, proof = tree.proof_of(w.address)
        chain.tx(ds.functions.registerWinner(rid, payment, proof), w)
    assert tree.total < BUDGET  # threshold payments leave part of the budget unspent
    # the unspent part of the budget returns at once
    before = mkt.balance(requester)
    chain.tx(ds.functions.refund(rid), mkt.actors.outsiders[0])
    assert mkt.balance(requester) == before + BUDGET - tree.total
    assert _escrow(mkt, ds) == tree.total
    chain.expect_revert(
        ds.functions.refund(rid), mkt.actors.outsiders[0], "DataSourcingNothingToRefund", rid
    )
    # no payment before the rounds are done
    chain.expect_revert(
        ds.functions.claimPayment(rid, *NO_LEAF),
        winners[0],
        "DataSourcingRoundsNotCompleted",
        rid,
        winners[0].address,
    )
    # the winners train both rounds (this task has no join gate: the gate is tested in
    # test_oracle_sourcing.py and the multi-process run)
    mkt.start(task_id, winners)
    chain.expect_revert(
        ds.functions.claimPayment(rid, *NO_LEAF), winners[0], "DataSourcingRoundsNotCompleted"
    )
    mkt.train(task_id, winners)
    # trained, but not paid before the task's payout table is final
    chain.expect_revert(
        ds.functions.claimPayment(rid, *NO_LEAF),
        winners[0],
        "DataSourcingPayoutNotFinal",
        rid,
        task_id,
    )
    table = _score(mkt, task_id, [(w.address, 300 * E18, 333_333, 0) for w in winners])
    chain.expect_revert(  # Finalized, but the dispute window is open: the root may change
        _claim(ds, rid, table, 0), winners[0], "DataSourcingPayoutNotFinal", rid, task_id
    )
    mkt.open_claims(task_id)
    # a row is the caller's own: another winner's row (or an altered one) does not verify
    chain.expect_revert(
        _claim(ds, rid, table, 0), winners[1], "DataSourcingBadPayoutLeaf", rid, winners[1].address
    )
    chain.expect_revert(
        _claim(ds, rid, table, 0, amount=1), winners[0], "DataSourcingBadPayoutLeaf"
    )
    paid = 0
    for i, w in enumerate(winners[:2]):  # the third never claims
        payment, _ = tree.proof_of(w.address)
        bal = mkt.balance(w.address)
        receipt = chain.tx(_claim(ds, rid, table, i), w)
        assert chain.events(ds, receipt, "PaymentClaimed")[0]["amount"] == payment
        assert mkt.balance(w.address) == bal + payment
        assert payment >= ASKS[owners.index(w)]  # threshold >= ask: a winner never loses
        paid += payment
    chain.expect_revert(_claim(ds, rid, table, 0), winners[0], "DataSourcingNothingToClaim")
    loser = owners[2]
    chain.expect_revert(
        ds.functions.claimPayment(rid, *NO_LEAF),
        loser,
        "DataSourcingNothingToClaim",
        rid,
        loser.address,
    )
    assert _escrow(mkt, ds) == tree.total - paid
    # after the claim deadline the unclaimed payment returns to the requester
    chain.warp_past(when["claim"])
    chain.expect_revert(_claim(ds, rid, table, 2), winners[2], "DataSourcingWrongTime")
    payment, proof = tree.proof_of(winners[2].address)
    chain.expect_revert(
        ds.functions.registerWinner(rid, payment, proof), winners[2], "DataSourcingWrongTime"
    )
    before = mkt.balance(requester)
    chain.tx(ds.functions.refund(rid), mkt.actors.outsiders[0])
    assert mkt.balance(requester) == before + tree.total - paid
    assert _escrow(mkt, ds) == 0
    info = ds.functions.request(rid).call()
    assert info[4] + info[5] == BUDGET  # paid + refunded == budget


def test_a_flagged_winner_is_not_paid_and_its_payment_returns_to_the_requester(
    chain: Chain, mkt: Market, ds: Contract
) -> None:
    """Money follows contribution: a winner the committee flagged in the task's final payout
    table (here a free rider and a poisoner) cannot claim its threshold payment; it returns to
    the requester, once, with the refund after the claim deadline."""
    task_id, rid, when, _, winners, tree = _registered(chain, mkt, ds)
    requester = mkt.actors.requester.address
    mkt.start(task_id, winners)
    mkt.train(task_id, winners)
    flags = (0, int(Flag.FREE_RIDER), int(Flag.POISONER))
    rows = [
        (w.address, (300 if f == 0 else 0) * E18, 500_000, f)
        for w, f in zip(winners, flags, strict=True)
    ]
    table = _score(mkt, task_id, rows)
    mkt.open_claims(task_id)
    for i in (1, 2):
        w = winners[i]
        chain.expect_revert(
            _claim(ds, rid, table, i),
            w,
            "DataSourcingWinnerFlagged",
            rid,
            w.address,
            flags[i],
        )
        # the flag cannot be dropped: the unflagged row is not in the final table
        chain.expect_revert(_claim(ds, rid, table, i, flags=0), w, "DataSourcingBadPayoutLeaf")
    honest_payment, _ = tree.proof_of(winners[0].address)
    chain.tx(_claim(ds, rid, table, 0), winners[0])
    assert ds.functions.winner(rid, winners[1].address).call() == [
        tree.proof_of(winners[1].address)[0],
        False,
    ]
    # withheld, not yet refundable (a claim could still come until the deadline) ...
    chain.expect_revert(
        ds.functions.refund(rid), mkt.actors.outsiders[0], "DataSourcingNothingToRefund", rid
    )
    # ... then it returns to the requester, exactly once
    chain.warp_past(when["claim"])
    before = mkt.balance(requester)
    chain.tx(ds.functions.refund(rid), mkt.actors.outsiders[0])
    assert mkt.balance(requester) == before + tree.total - honest_payment
    chain.expect_revert(
        ds.functions.refund(rid), mkt.actors.outsiders[0], "DataSourcingNothingToRefund", rid
    )
    info = ds.functions.request(rid).call()
    assert (info[4], info[5]) == (honest_payment, BUDGET - honest_payment)  # paid, refunded
    assert _escrow(mkt, ds) == 0


def test_if_scoring_fails_winners_that_trained_the_last_round_are_paid(
    chain: Chain, mkt: Market, ds: Contract
) -> None:
    """No payout root (no oracle revealed): as TaskMarket's fallback pays trainers, a winner that
    committed the last round's update is paid (the failure is not its fault); one that skipped
    it is not. The leaf arguments are ignored."""
    task_id, rid, _, _, winners, tree = _registered(chain, mkt, ds)
    deployer = mkt.actors.deployer
    mkt.start(task_id, winners)
    for r in (1, 2):
        committers = winners if r == 1 else winners[:2]  # the third skips the last round
        for i, t in enumerate(committers):
            digest = Web3.keccak(text=f"update {task_id} {r} {i}")
            chain.tx(mkt.fn.commitUpdate(task_id, r, f"bafy-update-{r}-{i}", digest, 100 + i), t)
        if r == 2:
            chain.warp_past(mkt.task(task_id)["phaseDeadline"])
        chain.tx(mkt.fn.advance(task_id), deployer)
    mkt.score(task_id, {}, {})  # nobody commits nor reveals: scoring fails
    assert mkt.task(task_id)["scoringFailed"]
    payment, _ = tree.proof_of(winners[0].address)
    bal = mkt.balance(winners[0].address)
    chain.tx(ds.functions.claimPayment(rid, *NO_LEAF), winners[0])
    assert mkt.balance(winners[0].address) == bal + payment
    chain.tx(ds.functions.claimPayment(rid, 7, 1, 2, 3, [b"\x01" * 32]), winners[1])  # ignored
    chain.expect_revert(
        ds.functions.claimPayment(rid, *NO_LEAF),
        winners[2],
        "DataSourcingRoundsNotCompleted",
        rid,
        winners[2].address,
    )


def test_client_runs_the_request_and_offer_flow(chain: Chain, mkt: Market, ds: Contract) -> None:
    contracts = {
        "RewardToken": ContractRecord(mkt.token.address, chain.artifacts["RewardToken"].abi),
        "TaskMarket": ContractRecord(mkt.market.address, chain.artifacts["TaskMarket"].abi),
        "DataSourcing": ContractRecord(ds.address, chain.artifacts["DataSourcing"].abi),
    }
    client = DataSourcingClient(chain.w3, Deployment(chain_id=chain.chain_id, contracts=contracts))
    task_id = mkt.create(TaskSpec())
    when = _schedule(chain)
    params = RequestParams(*_params(mkt, task_id, when))
    rid = client.create_request(mkt.actors.requester, params)
    assert client.request_of_task(task_id) == rid
    view = client.request(rid)
    assert view.budget == BUDGET and view.committee_size == 3 and not view.selected
    assert (view.offer_bond, view.offer_count, view.bonds_held) == (BOND, 0, 0)
    assert client.min_offer_bond(mkt.token.address) == E18
    owner = mkt.actors.trainers[0]
    chain.tx(mkt.token.functions.approve(ds.address, 0), owner)  # the client approves the bond
    assert client.approve_offer_bond(owner, rid) == BOND
    salt = b"\x11" * 32
    client.commit_offer(
        owner, rid, offer_commitment(rid, owner.address, 7 * E18, 120, "bafy-s", salt)
    )
    assert client.request(rid).bonds_held == BOND
    with pytest.raises(TransactionRevertedError) as err:
        client.reveal_offer(owner, rid, ask=7 * E18, samples=120, sketch_cid="bafy-s", salt=salt)
    assert err.value.error_name == "DataSourcingWrongTime"
    chain.warp_past(when["offer"])
    client.reveal_offer(owner, rid, ask=7 * E18, samples=120, sketch_cid="bafy-s", salt=salt)
    assert client.offer(rid, owner.address) == (7 * E18, 120)
    assert client.request(rid).bonds_held == 0  # returned at the reveal
    assert not client.can_join(task_id, owner.address)


def test_every_data_sourcing_error_is_asserted() -> None:
    from marketplace.chain.compiler import compile_contracts

    abi = compile_contracts()["DataSourcing"].abi
    errors = {
        i["name"] for i in abi if i["type"] == "error" and i["name"].startswith("DataSourcing")
    }
    source = Path(__file__).read_text()
    asserted = set(re.findall(r'"(DataSourcing\w+)"', source))
    assert len(errors) >= 20
    assert sorted(errors - asserted) == []


def test_three_owners_offer_sealed_sketches_and_two_are_selected(
    chain: Chain, mkt: Market, ds: Contract, tmp_path
) -> None:
    """The whole sourcing procedure on Anvil with the embedded store: owners sketch real data and
    seal it to the committee, every oracle opens the sketches and computes the same selection,
    the quorum finalizes it, and the gate admits exactly the two winners."""
    from marketplace import fl
    from marketplace.chain.devnet import dev_x25519_private
    from marketplace.protocol.sourcing import (
        collect_offers,
        commit_selection,
        committee_selection,
        prepare_offer,
        reveal_selection,
    )
    from marketplace.sourcing import SketchSpec, discriminant_basis
    from marketplace.storage.embedded import EmbeddedStore

    contracts = {
        "RewardToken": ContractRecord(mkt.token.address, chain.artifacts["RewardToken"].abi),
        "TaskMarket": ContractRecord(mkt.market.address, chain.artifacts["TaskMarket"].abi),
        "DataSourcing": ContractRecord(ds.address, chain.artifacts["DataSourcing"].abi),
    }
    client = DataSourcingClient(chain.w3, Deployment(chain_id=chain.chain_id, contracts=contracts))
    store = EmbeddedStore(tmp_path / "store")
    oracles = mkt.actors.oracles
    keys = {o.address: dev_x25519_private(3 + k) for k, o in enumerate(oracles)}
    public = {a: k.public_key().public_bytes_raw() for a, k in keys.items()}
    # the requester's data request: a digits model, its validation set, a 150-token budget
    splits = fl.split_dataset(fl.load_dataset("digits"), seed=0)
    val = splits.validation
    basis = discriminant_basis(val.x, val.y, num_classes=10, num_directions=9, seed=5)
    spec = SketchSpec(task_seed=5, input_dim=64, num_classes=10, num_directions=9, basis=basis)
    task_id = mkt.create(TaskSpec(rounds=1, min_trainers=2, max_trainers=2))
    when = _schedule(chain)
    budget = 150 * E18
    rid = client.create_request(
        mkt.actors.requester, RequestParams(*_params(mkt, task_id, when, budget=budget))
    )
    for o in oracles:
        client.accept_seat(o, rid)
    # three owners: two clean, one with half its labels wrong (and the highest ask)
    parts = np.array_split(np.random.default_rng(0).permutation(len(splits.train)), 3)
    labels = fl.add_label_noise(splits.train.y, parts[2], fraction=0.5, num_classes=10, seed=1)
    owners = mkt.actors.trainers[:3]
    prepared = []
    for owner, rows, ask in zip(owners, parts, (40 * E18, 50 * E18, 60 * E18), strict=True):
        offer = prepare_offer(
            store=store, spec=spec, x=splits.train.x[rows], y=labels[rows], ask=ask,
            request_id=rid, task_id=task_id, chain_id=chain.chain_id, owner=owner.address,
            committee_keys=public,
        )  # fmt: skip
        client.commit_offer(owner, rid, offer.commitment(owner.address))
        prepared.append(offer)
    chain.warp_past(when["offer"])
    for owner, offer in zip(owners, prepared, strict=True):
        client.reveal_offer(
            owner, rid, ask=offer.ask, samples=offer.samples, sketch_cid=offer.sketch_cid,
            salt=offer.salt,
        )  # fmt: skip
    chain.warp_past(when["reveal"])
    # every oracle opens the sealed sketches and computes the selection
    results = []
    for o in oracles:
        offers = collect_offers(
            client, store, rid, task_id=task_id, chain_id=chain.chain_id, oracle=o.address,
            x25519_private=keys[o.address],
        )  # fmt: skip
        assert len(offers) == 3 and all(x.problem is None for x in offers)
        results.append(
            committee_selection(
                offers, request_id=rid, spec=spec, x_val=val.x, y_val=val.y, budget=budget
            )
        )
    assert len({r.digest() for r, _ in results}) == 1  # honest oracles agree to the bit
    result, tree = results[0]
    assert tree is not None
    winners = set(result.winners)
    assert winners == {owners[0].address, owners[1].address}  # the noisy offer is not picked
    assert sum(result.payments) <= budget
    for o, ask in zip(owners[:2], (40 * E18, 50 * E18), strict=True):
        assert dict(zip(result.winners, result.payments, strict=True))[o.address] >= ask
    for k, o in enumerate(oracles[:2]):
        commit_selection(client, o, rid, tree, "bafy-report", bytes([k + 1]) * 32)
    chain.warp_past(when["commit"])
    for k, o in enumerate(oracles[:2]):
        reveal_selection(client, o, rid, tree, "bafy-report", bytes([k + 1]) * 32)
    assert client.request(rid).selected
    for o in owners[:2]:
        client.register_winner(o, rid, tree)
    assert [client.can_join(task_id, o.address) for o in owners] == [True, True, False]
