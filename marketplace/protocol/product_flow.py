"""The model's life after claims, as one procedure: the demo's continuation.

Given a finished task (payout root final, claims open, final model digest posted) it runs, with
real parties: the requester fixes K and M and submits the final aggregate sealed to the committee;
every committee member fetches it, checks its digest and scores it on the validation set; the
scores are committed and revealed; two (or M) auditors receive the model and the validation set
sealed to them, check both and attest; the requester approves; the committee fixes the total
score; the model is listed; each buyer pays in one transaction, the key holder delivers, the buyer
downloads and checks the digest; finally every trainer's royalties are claimed with its payout
leaf. Returns what a report table needs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account.signers.local import LocalAccount

from marketplace.chain.model_market_client import (
    ListingParams,
    ModelMarketClient,
    ProductParams,
    ProductRole,
)
from marketplace.errors import ChainError, DigestMismatchError
from marketplace.fl.data import canonical_bytes
from marketplace.fl.models import ModelSpec
from marketplace.protocol.audit import (
    AuditPackage,
    audit_context,
    open_audit_package,
    seal_audit_package,
)
from marketplace.protocol.model_evaluation import (
    commit_and_reveal_evaluation,
    evaluate_submission,
    fetch_submission,
    seal_submission,
)
from marketplace.protocol.model_sale import buy_model, deliver_sale, download_model, publish_model
from marketplace.storage.base import ContentStore
from marketplace.valuation.merkle import PayoutTree


@dataclass(frozen=True)
class Party:
    """An account with its X25519 key (a node's identity)."""

    eth: LocalAccount
    x25519_private: X25519PrivateKey

    @property
    def address(self) -> str:
        return str(self.eth.address)

    @property
    def x25519_public(self) -> bytes:
        return self.x25519_private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class ProductOutcome:
    """What the product phase produced."""

    listing_id: int
    score_ppm: int
    sales: int
    gross: int
    royalties: Mapping[str, int] = field(default_factory=dict)  # trainer -> tokens
    downloads_verified: int = 0


def run_product_phase(
    client: ModelMarketClient,
    store: ContentStore,
    *,
    task_id: int,
    tree: PayoutTree,
    final_model: bytes,
    model_spec: ModelSpec,
    x_val: np.ndarray,
    y_val: np.ndarray,
    requester: Party,
    oracles: Sequence[Party],
    auditors: Sequence[Party],
    buyers: Sequence[Party],
    price: int,
    threshold_ppm: int = 500_000,
) -> ProductOutcome:
    """Run submission → evaluation → audits → listing → sales → royalty claims (see module).

    Raises
    ------
    DigestMismatchError
        ``(x_val, y_val)`` is not the validation set the task committed to on-chain (checked
        before any transaction: the committee scores, and the auditors check, only that set).
    """
    chain_id = client.chain_id
    validation = canonical_bytes(x_val, y_val)
    committed = client.validation_commitment(task_id)
    if hashlib.sha256(validation).digest() != committed:
        raise DigestMismatchError(
            f"task {task_id}: the validation set does not match its on-chain commitment "
            f"0x{committed.hex()}; score and audit only the committed set"
        )
    client.configure(
        requester.eth, task_id,
        ProductParams(max_submissions=2, threshold_ppm=threshold_ppm,
                      required_attestations=len(auditors), eval_commit_duration=3600,
                      eval_reveal_duration=3600),
    )  # fmt: skip
    sealed = seal_submission(
        final_model, recipients={o.address: o.x25519_public for o in oracles},
        chain_id=chain_id, task_id=task_id, developer=requester.address,
    )  # fmt: skip
    sub = client.submit_final_model(requester.eth, task_id, str(store.put(sealed)))
    scores = {
        evaluate_submission(
            model_spec,
            fetch_submission(
                client,
                store,
                task_id=task_id,
                submission=sub,
                member=o.address,
                x25519_private=o.x25519_private,
            ),
            x_val,
            y_val,
        )
        for o in oracles
    }
    if len(scores) != 1:
        raise ChainError(f"committee members disagree on the score: {sorted(scores)}")
    (score,) = scores
    commit_and_reveal_evaluation(client, [o.eth for o in oracles], task_id, sub, score)
    info = client.submission(task_id, sub)
    if not info.passed:
        raise ChainError(f"the model scored {score} ppm, below the threshold {threshold_ppm}")
    ctx = audit_context(chain_id, task_id, sub, requester.address)
    package_cid = str(
        store.put(
            seal_audit_package(
                AuditPackage(final_model, validation),
                auditors={a.address: a.x25519_public for a in auditors},
                context=ctx,
            )
        )
    )
    for a in auditors:
        if client.role_of(a.address) is ProductRole.NONE:
            client.register(a.eth, ProductRole.AUDITOR, a.x25519_public)
        open_audit_package(
            store.get(package_cid), auditor=a.address, x25519_private=a.x25519_private,
            context=ctx, model_digest=info.digest,
            validation_commitment=client.validation_commitment(task_id),
        )  # fmt: skip
        report = f"audit:{task_id}:{sub}:{a.address}"
        sig = client.sign_attestation(a.eth, task_id, info.digest, report, True)
        client.attest(a.eth, task_id, sub, info.digest, report, True, sig)
    client.approve(requester.eth, task_id, sub)
    total = sum(e.score_ppm for e in tree.entries if not e.flags)
    for o in oracles:
        if client.product(task_id).total_score:
            break
        client.attest_total_score(o.eth, task_id, total)
    now = client.now()
    listing_id = client.list_model(
        requester.eth,
        ListingParams(
            task_id=task_id, submission=sub, price=price, license_cid="fedmarket:demo-license",
            expiry=now + 30 * 86400, delivery_window=86400, royalty_window=30 * 86400,
            key_holder=requester.address, requester_bps=1000, auditor_bps=500,
        ),
    )  # fmt: skip
    model_cid, content_key = publish_model(store, final_model, chain_id=chain_id, task_id=task_id)
    verified = 0
    for b in buyers:
        sale_id = buy_model(client, b.eth, listing_id, b.x25519_public)
        deliver_sale(client, requester.eth, sale_id, model_cid=model_cid, content_key=content_key)
        got = download_model(
            client, store, buyer=b.address, buyer_private=b.x25519_private, sale_id=sale_id
        )
        verified += int(hashlib.sha256(got).digest() == info.digest)
    royalties: dict[str, int] = {}
    for e in tree.entries:
        accrued, paid = client.royalty_of(listing_id, e.index, e.score_ppm)
        if e.flags or accrued == paid:
            royalties[e.account] = paid
            continue
        client.claim_royalty(requester.eth, listing_id, e.claim_values(), tree.proof(e.index))
        royalties[e.account] = client.royalty_of(listing_id, e.index, e.score_ppm)[1]
    listing = client.listing(listing_id)
    return ProductOutcome(
        listing_id=listing_id, score_ppm=score, sales=listing.sales, gross=listing.gross,
        royalties=royalties, downloads_verified=verified,
    )  # fmt: skip


def new_party(account: LocalAccount) -> Party:
    """A party with a fresh X25519 key (a buyer needs no registered key)."""
    return Party(
        eth=account, x25519_private=X25519PrivateKey.from_private_bytes(secrets.token_bytes(32))
    )
