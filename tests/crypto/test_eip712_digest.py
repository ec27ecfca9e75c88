"""``SignedMessageType.digest`` encodes EIP-712 directly (for speed: every peer verifies every
gossiped message); it must agree with eth-account's generic typed-data encoder on every signed
type, and signatures made with it must verify as standard EIP-712 signatures."""

from __future__ import annotations

import dataclasses
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.crypto.announce import (
    ANNOUNCEMENT_TYPE,
    SNAPSHOT_ANNOUNCEMENT_TYPE,
    SignedMessageType,
)
from marketplace.crypto.update_leaf import UPDATE_LEAF_TYPE
from marketplace.protocol.secagg_exchange import SECAGG_MESSAGE_TYPE

TYPES = (ANNOUNCEMENT_TYPE, SNAPSHOT_ANNOUNCEMENT_TYPE, UPDATE_LEAF_TYPE, SECAGG_MESSAGE_TYPE)
ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: str(to_checksum_address(b)))
VALUES = {
    "uint256": st.integers(min_value=0, max_value=2**256 - 1),
    "bytes32": st.binary(min_size=32, max_size=32),
    "address": ADDRESSES,
    "string": st.text(max_size=80),
}


def message(kind: SignedMessageType, values: dict[str, Any]) -> Any:
    """A bare message of ``kind`` (a frozen dataclass of its fields, as the real ones are)."""
    cls = dataclasses.make_dataclass(
        kind.primary_type, [*values, ("signature", bytes, b"")], frozen=True
    )
    return cls(**values)


@st.composite
def messages(draw: Any) -> tuple[SignedMessageType, Any, str]:
    kind = draw(st.sampled_from(TYPES))
    values = {attr: draw(VALUES[type_]) for _, attr, type_ in kind.fields}
    return kind, message(kind, values), draw(ADDRESSES)


@settings(max_examples=300, deadline=None)
@given(messages())
def test_the_direct_digest_is_eth_accounts_typed_data_hash(case: Any) -> None:
    kind, msg, market = case
    signable = encode_typed_data(full_message=kind.typed_data(msg, market))
    reference = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert kind.digest(msg, market) == reference
    assert kind.digest(msg, market.lower()) == reference  # the address's case does not matter


def test_a_signature_made_on_the_digest_is_a_standard_eip712_signature() -> None:
    account = Account.from_key(b"\x01" * 32)
    for kind in TYPES:
        values = {
            "uint256": 7, "bytes32": b"\x42" * 32, "address": account.address,
            "string": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        }  # fmt: skip
        msg = message(kind, {attr: values[type_] for _, attr, type_ in kind.fields})
        market = "0x" + "ab" * 20
        signed = kind.sign(account, msg, market)  # type: ignore[type-var]
        signable = encode_typed_data(full_message=kind.typed_data(signed, market))
        assert Account.recover_message(signable, signature=signed.signature) == account.address
        assert kind.recover_sender(signed, market) == account.address
        # sign_message on eth-account's encoding gives the same (deterministic) signature
        assert bytes(account.sign_message(signable).signature) == signed.signature
