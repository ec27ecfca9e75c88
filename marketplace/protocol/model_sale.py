"""Selling a model: encrypt it once, seal its content key to each buyer, download and verify.

The key holder (the requester's node) encrypts the approved model once under a fresh content key
(AES-256-GCM, associated data binding chain id, task and the model's digest) and adds the blob to
the content store. For each paid sale it seals a small JSON payload — the model blob's CID and the
content key — to the buyer's X25519 key with :mod:`marketplace.crypto.envelope`, in an envelope
whose context is ``(chain id, task id, round = sale id, sender = key holder)``, and records the
envelope itself on-chain with ``ModelMarket.deliver`` (the bytes go in the ``Delivered`` event, the
sale stores their keccak256). No content store carries the key: a delivered buyer gets its
envelope from any node serving the chain's logs, even if the key holder's store is gone.

A buyer needs one transaction (``buyWithPermit``: payment and permit together, two with a plain
``approve`` + ``buy``); the download is reads only: the envelope from the sale's ``Delivered`` log
(checked against the stored hash), the model blob from the store, and the model's sha256 checked
against the digest the committee evaluated (the submission's, on-chain).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account.signers.local import LocalAccount

from marketplace.chain.model_market_client import ModelMarketClient, SaleStatus
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import ChainError, CryptoError, DigestMismatchError
from marketplace.jsonlimits import shallow_json
from marketplace.storage.base import ContentStore

MODEL_MAGIC = b"FMMDL1"
MAX_DELIVERY_BYTES = 1024  # ModelMarket.MAX_SEALED_KEY: the longest envelope deliver records
_NONCE_BYTES = 12


def _model_aad(chain_id: int, task_id: int, digest: bytes) -> bytes:
    return b"fedmarket/model-sale/v1|" + struct.pack(">QQ", chain_id, task_id) + digest


def encrypt_model(
    plaintext: bytes, *, chain_id: int, task_id: int, content_key: bytes | None = None
) -> tuple[bytes, bytes]:
    """``(blob, content_key)``: the model under a fresh (or given) 32-byte key."""
    key = content_key or AESGCM.generate_key(bit_length=256)
    if len(key) != 32:
        raise CryptoError("a model content key must be 32 bytes (AES-256)")
    digest = hashlib.sha256(plaintext).digest()
    nonce = secrets.token_bytes(_NONCE_BYTES)
    body = AESGCM(key).encrypt(nonce, plaintext, _model_aad(chain_id, task_id, digest))
    return MODEL_MAGIC + digest + nonce + body, key


def decrypt_model(
    blob: bytes, *, content_key: bytes, chain_id: int, task_id: int, expected_digest: bytes
) -> bytes:
    """The model's plaintext, checked against ``expected_digest`` (the on-chain digest)."""
    head = len(MODEL_MAGIC)
    if len(blob) < head + 32 + _NONCE_BYTES + 16 or blob[:head] != MODEL_MAGIC:
        raise CryptoError("not a FedMarket sold-model blob (bad magic or truncated)")
    digest = blob[head : head + 32]
    if digest != expected_digest:
        raise DigestMismatchError(
            f"the model blob is for digest 0x{digest.hex()}, the listing sells "
            f"0x{expected_digest.hex()}: the key holder delivered another model; ask for a refund"
        )
    nonce = blob[head + 32 : head + 32 + _NONCE_BYTES]
    try:
        plain = AESGCM(content_key).decrypt(
            nonce, blob[head + 32 + _NONCE_BYTES :], _model_aad(chain_id, task_id, digest)
        )
    except InvalidTag:
        raise CryptoError("the model blob failed authentication: wrong key or tampered") from None
    verify_model_digest(plain, expected_digest)
    return plain


def verify_model_digest(plaintext: bytes, expected_digest: bytes) -> None:
    """Raise :class:`DigestMismatchError` unless ``sha256(plaintext) == expected_digest``."""
    got = hashlib.sha256(plaintext).digest()
    if got != expected_digest:
        raise DigestMismatchError(
            f"downloaded model hashes to 0x{got.hex()}, expected 0x{expected_digest.hex()}: "
            "do not use it; fetch again or ask for a refund"
        )


@dataclass(frozen=True)
class Delivery:
    """What a buyer's envelope carries."""

    model_cid: str
    content_key: bytes

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"modelCid": self.model_cid, "contentKey": self.content_key.hex()}, sort_keys=True
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Delivery:
        try:
            obj = shallow_json(data)  # the seller's: nesting bounded
            key = bytes.fromhex(obj["contentKey"])
            cid = str(obj["modelCid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CryptoError(f"malformed delivery payload: {exc}") from None
        if len(key) != 32 or not cid:
            raise CryptoError("malformed delivery payload: key must be 32 bytes, CID non-empty")
        return cls(model_cid=cid, content_key=key)


def sale_context(chain_id: int, task_id: int, sale_id: int, key_holder: str) -> EnvelopeContext:
    """The envelope context of a sale's delivery (``round`` carries the sale id)."""
    return EnvelopeContext(chain_id=chain_id, task_id=task_id, round=sale_id, sender=key_holder)


def seal_delivery(
    delivery: Delivery, *, buyer: str, buyer_public: bytes, context: EnvelopeContext
) -> bytes:
    """The delivery sealed to the buyer's X25519 public key (32 raw bytes)."""
    return seal(delivery.to_bytes(), recipients={buyer: buyer_public}, context=context)


def open_delivery(
    blob: bytes, *, buyer: str, buyer_private: X25519PrivateKey, context: EnvelopeContext
) -> Delivery:
    """Open a sealed delivery; :class:`CryptoError` if it is not for this buyer and sale."""
    if len(blob) > MAX_DELIVERY_BYTES:
        raise CryptoError(f"a delivery envelope of {len(blob)} bytes is too large to be genuine")
    plain = open_envelope(
        blob, recipient_address=buyer, x25519_private=buyer_private, expected_context=context
    )
    return Delivery.from_bytes(plain)


# --- procedures over the chain and the store ----------------------------------------------------


def publish_model(
    store: ContentStore, plaintext: bytes, *, chain_id: int, task_id: int
) -> tuple[str, bytes]:
    """Key holder, once per model: encrypt and add it; returns ``(model_cid, content_key)``."""
    blob, key = encrypt_model(plaintext, chain_id=chain_id, task_id=task_id)
    return str(store.put(blob)), key


def deliver_sale(
    client: ModelMarketClient,
    key_holder: LocalAccount,
    sale_id: int,
    *,
    model_cid: str,
    content_key: bytes,
) -> bytes:
    """Key holder: seal the content key to the sale's buyer and record the envelope on-chain;
    returns the envelope."""
    sale = client.sale(sale_id)
    if sale.status is not SaleStatus.PAID:
        raise ChainError(f"sale {sale_id} is {sale.status.name.lower()}, not awaiting delivery")
    listing = client.listing(sale.listing_id)
    context = sale_context(client.chain_id, listing.task_id, sale_id, key_holder.address)
    sealed = seal_delivery(
        Delivery(model_cid, content_key),
        buyer=sale.buyer,
        buyer_public=sale.buyer_key,
        context=context,
    )
    if len(sealed) > MAX_DELIVERY_BYTES:
        raise CryptoError(
            f"the sealed delivery is {len(sealed)} bytes, ModelMarket records at most "
            f"{MAX_DELIVERY_BYTES}: is the model CID ({len(model_cid)} characters) genuine?"
        )
    client.deliver(key_holder, sale_id, sealed)
    return sealed


def buy_model(
    client: ModelMarketClient, buyer: LocalAccount, listing_id: int, buyer_public: bytes
) -> int:
    """Buyer: pay (one transaction, with a permit); returns the sale id."""
    sale_id, _ = client.buy(buyer, listing_id, buyer_public)
    return sale_id


def download_model(
    client: ModelMarketClient,
    store: ContentStore,
    *,
    buyer: str,
    buyer_private: X25519PrivateKey,
    sale_id: int,
) -> bytes:
    """Buyer: read the delivery from the chain, open it, fetch and decrypt the model from the
    store, check its digest.

    Raises
    ------
    ChainError
        The sale is not delivered yet (wait, or refund after the deadline).
    CryptoError, DigestMismatchError
        The delivery or model does not check out (a refund is not possible once delivered:
        keep the evidence — the sale id, whose envelope is on-chain, and this error).
    """
    sale = client.sale(sale_id)
    if sale.status is not SaleStatus.DELIVERED:
        raise ChainError(
            f"sale {sale_id} is {sale.status.name.lower()}: the key holder has not delivered; "
            f"retry later, or call refund after the deadline ({sale.deliver_by})"
        )
    listing = client.listing(sale.listing_id)
    expected = client.submission(listing.task_id, listing.submission).digest
    context = sale_context(client.chain_id, listing.task_id, sale_id, listing.key_holder)
    envelope = client.delivered_envelope(sale_id)
    delivery = open_delivery(envelope, buyer=buyer, buyer_private=buyer_private, context=context)
    blob = store.get(delivery.model_cid)
    return decrypt_model(
        blob,
        content_key=delivery.content_key,
        chain_id=client.chain_id,
        task_id=listing.task_id,
        expected_digest=expected,
    )
