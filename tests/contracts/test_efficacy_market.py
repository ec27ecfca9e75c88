"""Efficacy pricing end to end on the devnet and Kubo: a model owner escrows a cap, three data
owners enrol with data sealed to the committee, the committee fine-tunes the owner's model on
every coalition (real PyTorch), values each owner by exact Shapley of the accuracy gain on the
owner's committed test set, commits the table by commit-reveal, owners claim, and the owner takes
the rest."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from chainkit import E18
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from productkit import deployment_of, setup_product

from marketplace.chain.model_market_client import ModelMarketClient, OfferParams
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.fl.data import Dataset, load_dataset, split_dataset
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.serialization import WeightSpec, dump_weights, load_weights
from marketplace.fl.train import TrainConfig, train_centralized
from marketplace.protocol.efficacy import efficacy_table, efficacy_tree, improvement_shapley

SPEC = ModelSpec(arch="logreg", input_dim=64, num_classes=10, seed=0)
CONFIG = TrainConfig(epochs=3, lr=0.1, seed=0)


def _npz(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=ds.x, y=ds.y)
    return buf.getvalue()


def _from_npz(blob: bytes) -> Dataset:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:  # never unpickle a peer's bytes
        return Dataset("owner", z["x"], z["y"], 10)


def test_efficacy_pricing_pays_each_owner_per_ppm_of_improvement_up_to_the_cap(mkt, kubo_store):
    # Prepare: the owner's weak model (trained on 40 rows) and its committed test set
    splits = split_dataset(load_dataset("digits"), seed=1)
    train, test = splits.train, splits.test
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))
    base, _ = train_centralized(SPEC, train.subset(order[:40]), CONFIG)
    good_a = train.subset(order[40:240])
    good_b = train.subset(order[240:440])
    noisy = train.subset(order[440:640])
    noisy = noisy.with_labels(rng.integers(0, 10, len(noisy)))  # labels destroyed
    pm = setup_product(mkt)
    client = ModelMarketClient(pm.chain.w3, deployment_of(pm))
    owner, owners = pm.requester, mkt.actors.trainers[:3]
    oracles = mkt.actors.oracles
    committee_keys = [X25519PrivateKey.generate() for _ in oracles]
    recipients = {
        o.address: k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        for o, k in zip(oracles, committee_keys, strict=True)
    }
    model_blob = dump_weights(base)
    test_blob = _npz(test)
    ctx = EnvelopeContext(chain_id=client.chain_id, task_id=0, round=0, sender=owner.address)
    model_cid = kubo_store.put(seal(model_blob, recipients=recipients, context=ctx))
    test_cid = kubo_store.put(seal(test_blob, recipients=recipients, context=ctx))
    price, cap = 10**15, 300 * E18  # 0.001 token per ppm of accuracy
    offer_id = client.create_offer(
        owner,
        OfferParams(
            token=mkt.token.address, cap=cap, price_per_ppm=price, model_cid=str(model_cid),
            model_digest=hashlib.sha256(model_blob).digest(),
            test_set_commitment=hashlib.sha256(test_blob).digest(),
            oracles=tuple(o.address for o in oracles), quorum_bps=6600, max_owners=4,
            enroll_deadline=pm.chain.now() + 1000, commit_duration=1000, reveal_duration=1000,
            claim_duration=1000,
        ),
    )  # fmt: skip
    assert mkt.token.functions.balanceOf(client.efficacy.address).call() == cap
    # Execute: owners enrol with their data sealed to the committee
    for who, data in zip(owners, (good_a, good_b, noisy), strict=True):
        blob = _npz(data)
        c = EnvelopeContext(chain_id=client.chain_id, task_id=offer_id, round=0, sender=who.address)
        cid = kubo_store.put(seal(blob, recipients=recipients, context=c))
        client.enroll(who, offer_id, str(cid), hashlib.sha256(blob).digest())
    # the committee (member 0's view; the others compute the same) fetches, checks, values
    me, my_key = oracles[0], committee_keys[0]
    enrolled = client.efficacy.events.OwnerEnrolled().get_logs(
        from_block=0, argument_filters={"offerId": offer_id}
    )
    datasets, accounts = [], []
    for ev in enrolled:
        a = ev["args"]
        c = EnvelopeContext(
            chain_id=client.chain_id, task_id=offer_id, round=0, sender=a["account"]
        )
        plain = open_envelope(
            kubo_store.get(a["dataCid"]), recipient_address=me.address, x25519_private=my_key,
            expected_context=c,
        )  # fmt: skip
        assert hashlib.sha256(plain).digest() == a["dataDigest"]
        datasets.append(_from_npz(plain))
        accounts.append(a["account"])
    info = client.offer(offer_id)
    model_plain = open_envelope(
        kubo_store.get(str(model_cid)), recipient_address=me.address, x25519_private=my_key,
        expected_context=ctx,
    )  # fmt: skip
    assert hashlib.sha256(model_plain).digest() == info.model_digest
    spec = WeightSpec.from_module(build_model(SPEC))
    weights = load_weights(model_plain, spec=spec, max_bytes=10**7)
    test_plain = open_envelope(
        kubo_store.get(str(test_cid)), recipient_address=me.address, x25519_private=my_key,
        expected_context=ctx,
    )  # fmt: skip
    assert hashlib.sha256(test_plain).digest() == info.test_set_commitment
    shapley = improvement_shapley(SPEC, weights, datasets, _from_npz(test_plain), CONFIG)
    again = improvement_shapley(SPEC, weights, datasets, _from_npz(test_plain), CONFIG)
    assert shapley.values_ppm == again.values_ppm  # deterministic: members agree to the bit
    rows = efficacy_table(accounts, shapley.values_ppm, price_per_ppm=price, cap=cap)
    tree = efficacy_tree(rows, chain_id=client.chain_id, contract=client.efficacy.address,
                         offer_id=offer_id)  # fmt: skip
    root = bytes.fromhex(tree.root[2:])
    pm.chain.warp_past(info.enroll_deadline)
    salts = [bytes([i + 9]) * 32 for i in range(3)]
    for o, s in zip(oracles, salts, strict=True):
        client.commit_valuation(o, offer_id, root, "bafy-efficacy-report", s)
    pm.chain.warp_past(info.commit_deadline)
    for o, s in zip(oracles[:2], salts[:2], strict=True):  # two of three reach the quorum
        client.reveal_valuation(o, offer_id, root, "bafy-efficacy-report", s)
    assert client.offer(offer_id).payout_root == root
    before = {a: pm.mkt.balance(a) for a in accounts}
    for pos, row in enumerate(rows):
        if row.amount:
            client.claim_efficacy(
                pm.buyers[0], offer_id, (row.index, row.account, row.shapley_ppm, row.amount),
                tree.proof_at(pos),
            )  # fmt: skip
    # Assert: each owner got price x its Shapley ppm (or its scaled share of the cap)
    by_account = {r.account: r for r in rows}
    for a in accounts:
        assert pm.mkt.balance(a) - before[a] == by_account[a].amount
        assert by_account[a].amount <= price * by_account[a].shapley_ppm
    good = [by_account[owners[0].address], by_account[owners[1].address]]
    bad = by_account[owners[2].address]
    assert min(g.shapley_ppm for g in good) > bad.shapley_ppm
    assert sum(g.shapley_ppm for g in good) > 100_000  # the good data improved accuracy > 10 pts
    paid = sum(r.amount for r in rows)
    assert paid == client.offer(offer_id).paid <= cap
    # a second claim, or one above the price rule, is refused
    row = next(r for r in rows if r.amount)
    pos = rows.index(row)
    with pytest.raises(Exception, match="EfficacyMarketInvalidClaim"):
        client.claim_efficacy(
            pm.buyers[0], offer_id, (row.index, row.account, row.shapley_ppm, row.amount),
            tree.proof_at(pos),
        )  # fmt: skip
    # the owner takes the rest after the claim window: nothing stays in the contract
    owner_before = pm.mkt.balance(owner.address)
    with pytest.raises(Exception, match="EfficacyMarketNotRefundable"):
        client.refund_offer(owner, offer_id)
    pm.chain.warp_past(client.offer(offer_id).claim_deadline)
    client.refund_offer(owner, offer_id)
    assert pm.mkt.balance(owner.address) - owner_before == cap - paid
    assert mkt.token.functions.balanceOf(client.efficacy.address).call() == 0


def test_efficacy_table_scales_to_the_cap_without_breaking_the_price_rule():
    rows = efficacy_table(
        ["0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20], [300_000, 100_000, -5],
        price_per_ppm=10, cap=3_000_001,
    )  # fmt: skip
    assert [r.shapley_ppm for r in rows] == [300_000, 100_000, 0]
    assert sum(r.amount for r in rows) == 3_000_001
    assert all(r.amount <= 10 * r.shapley_ppm for r in rows)
    assert rows[2].amount == 0


def _offer(pm, **changes):
    base = {
        "token": pm.mkt.token.address, "cap": 100 * E18, "price_per_ppm": 10**12,
        "model_cid": "bafy-m", "model_digest": b"\x01" * 32, "test_set_commitment": b"\x02" * 32,
        "oracles": tuple(o.address for o in pm.mkt.actors.oracles), "quorum_bps": 6600,
        "max_owners": 1, "enroll_deadline": pm.chain.now() + 100, "commit_duration": 100,
        "reveal_duration": 100, "claim_duration": 100,
    }  # fmt: skip
    base.update(changes)
    return OfferParams(**base).as_tuple()


def test_efficacy_offers_enforce_roles_windows_and_commitments(mkt):
    # Prepare
    pm = setup_product(mkt)
    eff = pm.efficacy.functions
    owner, (t0, t1) = pm.requester, mkt.actors.trainers[:2]
    oracles, outsider = mkt.actors.oracles, pm.buyers[0]
    expect = pm.chain.expect_revert
    # Assert: bad offers
    expect(eff.createOffer(_offer(pm, cap=0)), owner, "EfficacyMarketInvalidParams")
    expect(eff.createOffer(_offer(pm, quorum_bps=5000)), owner, "EfficacyMarketInvalidParams")
    expect(
        eff.createOffer(_offer(pm, oracles=(outsider.address,))), owner,
        "EfficacyMarketWrongRole", outsider.address, 2,
    )  # fmt: skip
    dup = (oracles[0].address, oracles[0].address)
    expect(eff.createOffer(_offer(pm, oracles=dup)), owner, "EfficacyMarketConflictOfInterest")
    fot = pm.chain.deploy("FeeOnTransferToken", mkt.actors.deployer)
    pm.tx(fot.functions.mint(owner.address, 1000 * E18), owner)
    pm.tx(fot.functions.approve(pm.efficacy.address, 2**256 - 1), owner)
    expect(eff.createOffer(_offer(pm, token=fot.address)), owner, "EfficacyMarketFeeOnTransfer")
    expect(eff.enroll(9, "d", b"\x03" * 32), t0, "EfficacyMarketUnknownOffer", 9)
    # Execute: one offer with room for one data owner
    receipt = pm.tx(eff.createOffer(_offer(pm)), owner)
    offer_id = pm.chain.events(pm.efficacy, receipt, "OfferCreated")[0]["offerId"]
    expect(eff.enroll(offer_id, "d", b"\x03" * 32), outsider, "EfficacyMarketWrongRole")
    pm.tx(eff.enroll(offer_id, "d", b"\x03" * 32), t0)
    expect(eff.enroll(offer_id, "d", b"\x03" * 32), t0, "EfficacyMarketConflictOfInterest")
    expect(eff.enroll(offer_id, "d", b"\x03" * 32), t1, "EfficacyMarketFull", 1)
    expect(eff.commitValuation(offer_id, b"\x05" * 32), oracles[0], "EfficacyMarketOutsideWindow")
    expect(
        eff.commitValuation(offer_id, b"\x05" * 32), outsider, "EfficacyMarketNotCommitteeMember",
        outsider.address,
    )  # fmt: skip
    offer = eff.offer(offer_id).call()
    pm.chain.warp_past(offer[12])  # enroll deadline
    expect(eff.enroll(offer_id, "d", b"\x03" * 32), t1, "EfficacyMarketOutsideWindow")
    pm.tx(eff.commitValuation(offer_id, b"\x05" * 32), oracles[0])
    expect(eff.commitValuation(offer_id, b"\x06" * 32), oracles[0], "EfficacyMarketBadVote")
    expect(
        eff.claim(offer_id, 0, t0.address, 1, 1, []), outsider, "EfficacyMarketNotFinal", offer_id
    )
    pm.chain.warp_past(offer[13])  # commit deadline
    expect(
        eff.revealValuation(offer_id, b"\x07" * 32, "r", b"\x00" * 32), oracles[0],
        "EfficacyMarketBadVote", oracles[0].address,
    )  # fmt: skip
    # no quorum by the reveal deadline: the owner takes the whole cap back
    pm.chain.warp_past(offer[14])
    before = pm.mkt.balance(owner.address)
    pm.tx(eff.refund(offer_id), outsider)
    assert pm.mkt.balance(owner.address) - before == 100 * E18
    expect(eff.refund(offer_id), owner, "EfficacyMarketNotRefundable", offer_id)
