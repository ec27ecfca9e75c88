"""A peer's identity: the Ethereum key that signs and the X25519 key that opens envelopes."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.chain.devnet import dev_private_key, dev_x25519_private
from marketplace.crypto.keystore import UnlockedAccount


@dataclass(frozen=True)
class Identity:
    """An unlocked peer (from the keystore, or a devnet key)."""

    address: str
    eth: LocalAccount = field(repr=False)
    x25519_private: X25519PrivateKey = field(repr=False)

    @property
    def x25519_public(self) -> bytes:
        return self.x25519_private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def from_unlocked(cls, unlocked: UnlockedAccount) -> Identity:
        """From an account unlocked from the keystore."""
        return cls(
            address=unlocked.address, eth=unlocked.eth, x25519_private=unlocked.x25519_private
        )

    @classmethod
    def dev(cls, index: int) -> Identity:
        """Devnet account ``index`` of the public test mnemonic (devnets only)."""
        acct: LocalAccount = Account.from_key(dev_private_key(index))
        return cls(address=acct.address, eth=acct, x25519_private=dev_x25519_private(index))
