"""Crypto fixtures: the devnet's deterministic Ethereum and X25519 keys, an envelope context."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.chain.devnet import DEV_PRIVATE_KEYS, dev_x25519_private, dev_x25519_public
from marketplace.crypto.envelope import EnvelopeContext


@pytest.fixture
def sender() -> LocalAccount:
    return Account.from_key(DEV_PRIVATE_KEYS[1])


@pytest.fixture
def recipients() -> dict[str, bytes]:
    """Two trainers and an oracle: address → X25519 public key."""
    return {Account.from_key(DEV_PRIVATE_KEYS[i]).address: dev_x25519_public(i) for i in (2, 3, 4)}


@pytest.fixture
def reader() -> tuple[str, X25519PrivateKey]:
    """Recipient number 2's address and X25519 private key."""
    return Account.from_key(DEV_PRIVATE_KEYS[2]).address, dev_x25519_private(2)


@pytest.fixture
def context(sender: LocalAccount) -> EnvelopeContext:
    return EnvelopeContext(chain_id=31337, task_id=7, round=3, sender=sender.address)
