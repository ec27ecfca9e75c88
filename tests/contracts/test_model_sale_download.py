"""A trained model evaluated by the committee, sold, delivered on-chain (the sealed key in the
Delivered event) and downloaded from Kubo with its digest checked: the buyer sends one
transaction; an undelivered sale cannot be downloaded and is refunded after its delivery deadline;
a delivered sale still downloads once the key holder's store is gone."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from chainkit import E18
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from productkit import deployment_of, setup_product
from web3 import Web3

from marketplace.chain.model_market_client import ModelMarketClient
from marketplace.errors import ChainError, CryptoError, DigestMismatchError
from marketplace.fl.data import canonical_bytes, canonical_digest, load_dataset, split_dataset
from marketplace.fl.models import ModelSpec
from marketplace.fl.serialization import dump_weights
from marketplace.fl.train import TrainConfig, train_centralized
from marketplace.protocol.model_evaluation import evaluate_submission
from marketplace.protocol.model_sale import (
    buy_model,
    deliver_sale,
    download_model,
    publish_model,
)
from marketplace.storage.cid import raw_cid
from marketplace.storage.embedded import EmbeddedStore

SPEC = ModelSpec(arch="logreg", input_dim=64, num_classes=10, seed=0)


@pytest.fixture(scope="module")
def trained() -> tuple[bytes, object]:
    splits = split_dataset(load_dataset("digits"), seed=0)
    weights, _ = train_centralized(SPEC, splits.train, TrainConfig(epochs=5, lr=0.1, seed=0))
    return dump_weights(weights), splits


def _raw(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_a_buyer_pays_in_one_transaction_and_downloads_the_evaluated_model(
    mkt, kubo_store, trained
):
    # Prepare: the committee scores the real final model on the hidden validation set
    blob, splits = trained
    digest = hashlib.sha256(blob).digest()
    score = evaluate_submission(
        SPEC, blob, splits.validation.x, splits.validation.y, expected_digest=digest
    )
    assert score == evaluate_submission(SPEC, blob, splits.validation.x, splits.validation.y)
    assert score >= 800_000  # the configured threshold
    pm = setup_product(mkt)
    task_id, _ = pm.approved_task(final=digest, score=score)
    listing_id = pm.list(task_id)
    client = ModelMarketClient(pm.chain.w3, deployment_of(pm))
    assert client.submission(task_id, 1).score_ppm == score
    key_holder = pm.requester
    model_cid, content_key = publish_model(
        kubo_store, blob, chain_id=client.chain_id, task_id=task_id
    )
    buyer, other = pm.buyers
    buyer_key, other_key = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    nonce = pm.chain.w3.eth.get_transaction_count(buyer.address)
    # Execute: pay (one transaction: buyWithPermit), the key holder delivers, the buyer downloads
    sale_id = buy_model(client, buyer, listing_id, _raw(buyer_key))
    with pytest.raises(ChainError, match="not delivered"):
        download_model(
            client, kubo_store, buyer=buyer.address, buyer_private=buyer_key, sale_id=sale_id
        )
    envelope = deliver_sale(
        client, key_holder, sale_id, model_cid=model_cid, content_key=content_key
    )
    got = download_model(
        client, kubo_store, buyer=buyer.address, buyer_private=buyer_key, sale_id=sale_id
    )
    # Assert
    assert pm.chain.w3.eth.get_transaction_count(buyer.address) - nonce == 1
    assert got == blob
    assert client.sale(sale_id).sealed_key_hash == Web3.keccak(envelope)
    assert client.listing(listing_id).gross == 10 * E18
    # another buyer's key opens nothing of this sale
    with pytest.raises(CryptoError):
        download_model(
            client, kubo_store, buyer=other.address, buyer_private=other_key, sale_id=sale_id
        )
    with pytest.raises(CryptoError):
        download_model(
            client, kubo_store, buyer=buyer.address, buyer_private=other_key, sale_id=sale_id
        )
    # a sale the key holder never delivers: nothing to download, refunded after the deadline
    late = buy_model(client, other, listing_id, _raw(other_key))
    paid = pm.mkt.balance(other.address)
    pm.chain.warp_past(client.sale(late).deliver_by)
    with pytest.raises(ChainError, match="not delivered"):
        download_model(
            client, kubo_store, buyer=other.address, buyer_private=other_key, sale_id=late
        )
    with pytest.raises(ChainError, match="ModelMarketDeadlinePassed"):
        deliver_sale(client, key_holder, late, model_cid=model_cid, content_key=content_key)
    client.refund(other, late)
    assert pm.mkt.balance(other.address) - paid == 10 * E18
    assert client.listing(listing_id).gross == 10 * E18  # the refunded sale never counted


def test_a_delivered_sale_downloads_after_the_key_holders_store_is_gone(
    mkt, kubo_store, trained, tmp_path
):
    # Prepare: the key holder's node publishes the model in its own store; the ciphertext is
    # public, so a mirror (an earlier buyer, a pinning node) also serves it from Kubo
    blob, _ = trained
    pm = setup_product(mkt)
    task_id, _ = pm.approved_task(final=hashlib.sha256(blob).digest())
    listing_id = pm.list(task_id)
    client = ModelMarketClient(pm.chain.w3, deployment_of(pm))
    holder_dir = tmp_path / "key-holder-store"
    holder = EmbeddedStore(holder_dir)
    model_cid, content_key = publish_model(holder, blob, chain_id=client.chain_id, task_id=task_id)
    assert str(kubo_store.put(holder.get(model_cid))) == model_cid
    buyer, buyer_key = pm.buyers[0], X25519PrivateKey.generate()
    sale_id = buy_model(client, buyer, listing_id, _raw(buyer_key))
    envelope = deliver_sale(
        client, pm.requester, sale_id, model_cid=model_cid, content_key=content_key
    )
    # Execute: the key holder's store dies right after the delivery
    holder.close()
    shutil.rmtree(holder_dir)
    got = download_model(
        client, kubo_store, buyer=buyer.address, buyer_private=buyer_key, sale_id=sale_id
    )
    # Assert: the key came from the chain (the Delivered log, checked against the stored hash)
    assert got == blob
    assert client.delivered_envelope(sale_id) == envelope
    assert client.sale(sale_id).sealed_key_hash == Web3.keccak(envelope)
    assert not kubo_store.has(str(raw_cid(envelope)))  # no store ever held the envelope
    assert not holder_dir.exists()


def test_the_committee_scores_a_sealed_submission_and_auditors_audit_what_they_are_sealed(
    mkt, kubo_store, trained
):
    # Prepare: submission 1 (the final aggregate) fails; a developer submits the trained model
    from marketplace.chain.model_market_client import ProductParams
    from marketplace.protocol.audit import (
        AuditPackage,
        audit_context,
        open_audit_package,
        seal_audit_package,
    )
    from marketplace.protocol.model_evaluation import (
        commit_and_reveal_evaluation,
        fetch_submission,
        seal_submission,
    )

    blob, splits = trained
    pm = setup_product(mkt)
    val = splits.validation
    task_id, _ = pm.finished_task(validation=bytes.fromhex(canonical_digest(val.x, val.y)))
    pm.configure(task_id, ProductParams(3, 800_000, 5 * E18, 2, E18, 600, 600))
    pm.submit_final(task_id)
    pm.evaluate(task_id, 1, 100_000)
    client = ModelMarketClient(pm.chain.w3, deployment_of(pm))
    oracles = mkt.actors.oracles
    keys = {o.address: X25519PrivateKey.generate() for o in oracles}
    dev = pm.developers[0]
    sealed = seal_submission(
        blob, recipients={a: _raw(k) for a, k in keys.items()}, chain_id=client.chain_id,
        task_id=task_id, developer=dev.address,
    )  # fmt: skip
    # Execute: submit; every member fetches, checks and scores it; commit-reveal decides
    sub = client.submit(dev, task_id, str(kubo_store.put(sealed)), hashlib.sha256(blob).digest())
    scores = set()
    for o in oracles:
        got = fetch_submission(
            client, kubo_store, task_id=task_id, submission=sub, member=o.address,
            x25519_private=keys[o.address],
        )  # fmt: skip
        scores.add(evaluate_submission(SPEC, got, splits.validation.x, splits.validation.y))
    (score,) = scores  # every member computes the same integer
    commit_and_reveal_evaluation(client, list(oracles), task_id, sub, score)
    info = client.submission(task_id, sub)
    # the requester seals model + validation set to the auditors; each checks and attests
    validation = canonical_bytes(val.x, val.y)
    committed = client.validation_commitment(task_id)  # the task's, on-chain
    auditors = pm.auditors[:2]
    akeys = {a.address: X25519PrivateKey.generate() for a in auditors}
    ctx = audit_context(client.chain_id, task_id, sub, pm.requester.address)
    package = seal_audit_package(
        AuditPackage(blob, validation), auditors={a: _raw(k) for a, k in akeys.items()},
        context=ctx,
    )  # fmt: skip
    cid = str(kubo_store.put(package))
    for a in auditors:
        opened = open_audit_package(
            kubo_store.get(cid), auditor=a.address, x25519_private=akeys[a.address], context=ctx,
            model_digest=info.digest, validation_commitment=committed,
        )  # fmt: skip
        assert opened.model == blob
        sig = client.sign_attestation(a, task_id, info.digest, f"bafy-report-{a.address}", True)
        client.attest(a, task_id, sub, info.digest, f"bafy-report-{a.address}", True, sig)
    client.approve(pm.requester, task_id, sub)
    before = pm.mkt.balance(dev.address)
    client.claim_bounty(pm.buyers[0], task_id)
    # Assert
    assert (info.decided, info.passed, info.score_ppm) == (True, True, score)
    assert client.product(task_id).approved_submission == sub
    assert pm.mkt.balance(dev.address) - before == 5 * E18
    # a package carrying another validation set than the committed one is refused
    other = seal_audit_package(
        AuditPackage(blob, canonical_bytes(val.x, (val.y + 1) % 10)),
        auditors={a: _raw(k) for a, k in akeys.items()}, context=ctx,
    )  # fmt: skip
    with pytest.raises(DigestMismatchError, match="validation set"):
        open_audit_package(
            other, auditor=auditors[0].address, x25519_private=akeys[auditors[0].address],
            context=ctx, model_digest=info.digest, validation_commitment=committed,
        )  # fmt: skip
    with pytest.raises(CryptoError):  # not an auditor of this package
        open_audit_package(
            kubo_store.get(cid), auditor=pm.buyers[0].address,
            x25519_private=akeys[auditors[0].address],
            context=ctx, model_digest=info.digest, validation_commitment=b"\x00" * 32,
        )  # fmt: skip
