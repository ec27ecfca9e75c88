"""Signed announcements: "I put this update (CID, digest) for this task and round", EIP-712 signed.

The typed data is ``Announcement{chainId, taskId, round, cid, digest, sender, nonce}`` under the
domain ``{name: "FedMarket", version: "1", chainId, verifyingContract: <TaskMarket>}``, so a
signature is valid for one chain, one market contract, one task and one round: anything else is
a replay and is refused. On the wire an announcement is a small JSON object (bytes as 0x-hex,
integers as JSON numbers); parsing is bounded in size and strict in shape.

Whether the sender is a registered participant of the task is for the node to check against the
chain; this module only proves who signed what.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address

from marketplace.errors import SignatureError, StorageError
from marketplace.storage.cid import parse_cid

MAX_ANNOUNCEMENT_BYTES = 2048
DOMAIN_NAME = "FedMarket"
DOMAIN_VERSION = "1"
_UINT256_MAX = 2**256 - 1
_FIELDS = ("chainId", "taskId", "round", "cid", "digest", "sender", "nonce", "signature")

_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Announcement": [
        {"name": "chainId", "type": "uint256"},
        {"name": "taskId", "type": "uint256"},
        {"name": "round", "type": "uint256"},
        {"name": "cid", "type": "string"},
        {"name": "digest", "type": "bytes32"},
        {"name": "sender", "type": "address"},
        {"name": "nonce", "type": "uint256"},
    ],
}


@dataclass(frozen=True)
class Announcement:
    """A (possibly unsigned) announcement; ``digest`` is the sha256 of the bytes under ``cid``."""

    chain_id: int
    task_id: int
    round: int
    cid: str
    digest: bytes
    sender: str
    nonce: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        for name in ("chain_id", "task_id", "round", "nonce"):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= _UINT256_MAX
            ):
                raise SignatureError(f"malformed announcement: {name} must be a uint256")
        if not isinstance(self.digest, bytes) or len(self.digest) != 32:
            raise SignatureError("malformed announcement: digest must be 32 bytes")
        if not isinstance(self.sender, str) or not is_address(self.sender):
            raise SignatureError(
                f"malformed announcement: sender {self.sender!r} is not an address"
            )
        object.__setattr__(self, "sender", str(to_checksum_address(self.sender)))
        try:
            parse_cid(self.cid)
        except StorageError as exc:
            raise SignatureError(f"malformed announcement: {exc}") from None
        if not isinstance(self.signature, bytes) or len(self.signature) not in (0, 65):
            raise SignatureError("malformed announcement: signature must be 65 bytes")

    def typed_data(self, market_address: str) -> dict[str, Any]:
        """The EIP-712 structure that is signed (``full_message`` for ``encode_typed_data``)."""
        return {
            "types": _TYPES,
            "primaryType": "Announcement",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": self.chain_id,
                "verifyingContract": str(to_checksum_address(market_address)),
            },
            "message": {
                "chainId": self.chain_id,
                "taskId": self.task_id,
                "round": self.round,
                "cid": self.cid,
                "digest": self.digest,
                "sender": self.sender,
                "nonce": self.nonce,
            },
        }

    def to_json(self) -> bytes:
        """The wire form: compact JSON, bytes as 0x-hex."""
        return json.dumps(
            {
                "chainId": self.chain_id,
                "taskId": self.task_id,
                "round": self.round,
                "cid": self.cid,
                "digest": "0x" + self.digest.hex(),
                "sender": self.sender,
                "nonce": self.nonce,
                "signature": "0x" + self.signature.hex(),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Announcement:
        """Parse the wire form (does not verify); :class:`SignatureError` if oversize/malformed."""
        if len(raw) > MAX_ANNOUNCEMENT_BYTES:
            raise SignatureError(
                f"announcement of {len(raw)} bytes exceeds {MAX_ANNOUNCEMENT_BYTES}: dropped"
            )
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SignatureError(f"malformed announcement: not JSON ({exc})") from None
        if not isinstance(obj, dict) or set(obj) != set(_FIELDS):
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise SignatureError(
                f"malformed announcement: expected fields {list(_FIELDS)}, got {keys}"
            )
        return cls(
            chain_id=obj["chainId"],
            task_id=obj["taskId"],
            round=obj["round"],
            cid=obj["cid"],
            digest=_hex_bytes(obj["digest"], "digest"),
            sender=obj["sender"],
            nonce=obj["nonce"],
            signature=_hex_bytes(obj["signature"], "signature"),
        )


def _hex_bytes(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 2 + 2 * 65:
        raise SignatureError(f"malformed announcement: {name} must be 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise SignatureError(f"malformed announcement: {name} is not hex") from None


def _signable(msg: Announcement, market_address: str) -> Any:
    if not isinstance(market_address, str) or not is_address(market_address):
        raise SignatureError(f"market address {market_address!r} is not an Ethereum address")
    return encode_typed_data(full_message=msg.typed_data(market_address))


def sign_announcement(
    account: LocalAccount,
    *,
    chain_id: int,
    task_id: int,
    round: int,
    cid: str,
    digest: bytes,
    market_address: str,
    nonce: int | None = None,
) -> Announcement:
    """Sign an announcement as ``account`` (the sender); a random 64-bit nonce unless given."""
    unsigned = Announcement(
        chain_id=chain_id,
        task_id=task_id,
        round=round,
        cid=cid,
        digest=digest,
        sender=str(account.address),
        nonce=secrets.randbits(64) if nonce is None else nonce,
    )
    signed = account.sign_message(_signable(unsigned, market_address))
    return Announcement(**{**unsigned.__dict__, "signature": bytes(signed.signature)})


def verify_announcement(
    msg: Announcement | bytes | str,
    *,
    expected_chain_id: int,
    expected_task_id: int,
    expected_round: int,
    market_address: str,
) -> str:
    """Check an announcement; returns its sender (checksummed) or raises :class:`SignatureError`.

    Refuses a malformed or oversize message, one for another chain, task or round (replay), and
    one whose signature does not recover to its ``sender`` (forged or altered).
    """
    ann = msg if isinstance(msg, Announcement) else Announcement.from_json(msg)
    expected = (expected_chain_id, expected_task_id, expected_round)
    if (ann.chain_id, ann.task_id, ann.round) != expected:
        raise SignatureError(
            f"announcement is for chain {ann.chain_id} task {ann.task_id} round {ann.round}, "
            f"expected chain {expected[0]} task {expected[1]} round {expected[2]}: replay refused"
        )
    if len(ann.signature) != 65:
        raise SignatureError(f"announcement from {ann.sender} is not signed")
    try:
        signer = Account.recover_message(_signable(ann, market_address), signature=ann.signature)
    except Exception:  # eth-keys raises several types for a malformed signature
        raise SignatureError(f"announcement from {ann.sender}: signature is malformed") from None
    if signer != ann.sender:
        raise SignatureError(
            f"announcement claims sender {ann.sender} but was signed by {signer}: forged or altered"
        )
    return ann.sender
