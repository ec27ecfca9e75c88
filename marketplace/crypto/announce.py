"""Signed announcements: "I put this update (CID, digest) for this task and round", EIP-712 signed.

The typed data is ``Announcement{chainId, taskId, round, cid, digest, sender, nonce}`` under the
domain ``{name: "FedMarket", version: "1", chainId, verifyingContract: <TaskMarket>}``, so a
signature is valid for one chain, one market contract, one task and one round: anything else is
a replay and is refused. On the wire an announcement is a small JSON object (bytes as 0x-hex,
integers as JSON numbers); parsing is bounded in size and strict in shape.

:class:`SignedMessageType` is the machinery behind it (typed data, field checks, wire form,
signing and recovery), shared by every signed message format, all defined here: the update
:class:`Announcement` and the gossip-averaging :class:`SnapshotAnnouncement`
``{chainId, taskId, version, cid, digest, sender, numSamples, nonce}``. Each has its own primary
type, so a signature over one never verifies as another.

Whether the sender is a registered participant of the task is for the node to check against the
chain; this module only proves who signed what.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import Signature
from eth_typing import Hash32
from eth_utils.address import is_address
from eth_utils.crypto import keccak

from marketplace.errors import SignatureError, StorageError
from marketplace.jsonlimits import shallow_json
from marketplace.storage.cid import parse_cid
from marketplace.units import checksum_address

MAX_ANNOUNCEMENT_BYTES = 2048
MAX_SNAPSHOT_ANNOUNCEMENT_BYTES = 2048
DOMAIN_NAME = "FedMarket"
DOMAIN_VERSION = "1"
_UINT256_MAX = 2**256 - 1
#: The EIP-712 domain's fields (name, version, chain id, verifying contract), for every signed type.
EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

M = TypeVar("M")


@functools.lru_cache(maxsize=64)
def domain_separator(chain_id: int, market_address: str) -> bytes:
    """The EIP-712 domain hash of the FedMarket domain on ``chain_id`` for ``market_address``
    (as ``RoundBatch.leafDigest`` and OpenZeppelin's EIP712 compute it)."""
    members = ",".join(f"{m['type']} {m['name']}" for m in EIP712_DOMAIN_TYPE)
    type_hash = keccak(text=f"EIP712Domain({members})")
    return keccak(
        type_hash + keccak(text=DOMAIN_NAME) + keccak(text=DOMAIN_VERSION)
        + chain_id.to_bytes(32, "big") + bytes(12) + bytes.fromhex(market_address[2:])
    )  # fmt: skip


@dataclass(frozen=True)
class SignedMessageType:
    """One EIP-712 primary type signed under the FedMarket domain, and its JSON wire form.

    ``fields`` lists the typed-data members in order as ``(member, attribute, type)``: the
    camelCase name signed and sent on the wire, the attribute of the (frozen dataclass) message
    holding it, and its EIP-712 type (``uint256``, ``bytes32``, ``address`` or ``string``; the
    string is a CID). A message also has ``chain_id`` (the domain's chain) and ``signature``
    (empty or 65 bytes, sent after the members). ``label`` names the type in errors.
    """

    primary_type: str
    fields: tuple[tuple[str, str, str], ...]
    label: str
    max_bytes: int

    @property
    def types(self) -> dict[str, list[dict[str, str]]]:
        """The ``types`` of the typed data: the domain and this primary type."""
        members = [{"name": member, "type": type_} for member, _, type_ in self.fields]
        return {"EIP712Domain": EIP712_DOMAIN_TYPE, self.primary_type: members}

    def validate(self, msg: Any) -> None:
        """Check every field's type and range (call from ``__post_init__``); checksums the
        address fields in place. :class:`SignatureError` ("malformed …") on the first bad one."""
        for _, attr, type_ in self.fields:
            value = getattr(msg, attr)
            if type_ == "uint256":
                if (
                    not isinstance(value, int)
                    or isinstance(value, bool)
                    or not (0 <= value <= _UINT256_MAX)
                ):
                    raise SignatureError(f"malformed {self.label}: {attr} must be a uint256")
            elif type_ == "bytes32":
                if not isinstance(value, bytes) or len(value) != 32:
                    raise SignatureError(f"malformed {self.label}: {attr} must be 32 bytes")
            elif type_ == "address":
                if not isinstance(value, str) or not is_address(value):
                    raise SignatureError(
                        f"malformed {self.label}: {attr} {value!r} is not an address"
                    )
                object.__setattr__(msg, attr, checksum_address(value))
            else:  # string: the CID
                try:
                    parse_cid(value)
                except StorageError as exc:
                    raise SignatureError(f"malformed {self.label}: {exc}") from None
        if not isinstance(msg.signature, bytes) or len(msg.signature) not in (0, 65):
            raise SignatureError(f"malformed {self.label}: signature must be 65 bytes")

    def typed_data(self, msg: Any, market_address: str) -> dict[str, Any]:
        """The EIP-712 structure that is signed (``full_message`` for ``encode_typed_data``)."""
        return {
            "types": self.types,
            "primaryType": self.primary_type,
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": msg.chain_id,
                "verifyingContract": checksum_address(market_address),
            },
            "message": {member: getattr(msg, attr) for member, attr, _ in self.fields},
        }

    def to_json(self, msg: Any) -> bytes:
        """The wire form: compact JSON of the members and the signature, bytes as 0x-hex."""
        obj = {member: getattr(msg, attr) for member, attr, _ in self.fields}
        obj["signature"] = msg.signature
        return json.dumps(
            {k: "0x" + v.hex() if isinstance(v, bytes) else v for k, v in obj.items()},
            separators=(",", ":"),
        ).encode()

    def parse_json(self, raw: bytes | str) -> dict[str, Any]:
        """The constructor arguments in a wire form (size, JSON shape and hex checked; the
        values are checked by :meth:`validate`); :class:`SignatureError` if oversize/malformed."""
        if len(raw) > self.max_bytes:
            raise SignatureError(
                f"{self.label} of {len(raw)} bytes exceeds {self.max_bytes}: dropped"
            )
        try:
            obj = shallow_json(raw)  # a peer's: nesting bounded (1 deep)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SignatureError(f"malformed {self.label}: not JSON ({exc})") from None
        expected = [member for member, _, _ in self.fields] + ["signature"]
        if not isinstance(obj, dict) or set(obj) != set(expected):
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise SignatureError(f"malformed {self.label}: expected fields {expected}, got {keys}")
        kwargs = {
            attr: self._hex(obj[member], member) if type_ == "bytes32" else obj[member]
            for member, attr, type_ in self.fields
        }
        kwargs["signature"] = self._hex(obj["signature"], "signature")
        return kwargs

    def _hex(self, value: object, name: str) -> bytes:
        if not isinstance(value, str) or not value.startswith("0x") or len(value) > 2 + 2 * 65:
            raise SignatureError(f"malformed {self.label}: {name} must be 0x-prefixed hex")
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise SignatureError(f"malformed {self.label}: {name} is not hex") from None

    @functools.cached_property
    def type_hash(self) -> bytes:
        """keccak256 of the primary type's EIP-712 encoding, e.g. ``Announcement(uint256
        chainId,…)``."""
        members = ",".join(f"{type_} {member}" for member, _, type_ in self.fields)
        return keccak(text=f"{self.primary_type}({members})")

    def digest(self, msg: Any, market_address: str) -> bytes:
        """The EIP-712 digest that is signed: ``keccak256("\x19\x01" ‖ domain ‖ struct)``.

        Encoded directly (every member is a static type or a string) rather than through
        eth-account's generic typed-data encoder, which costs several times more; the tests
        check both agree on every type."""
        if not isinstance(market_address, str) or not is_address(market_address):
            raise SignatureError(f"market address {market_address!r} is not an Ethereum address")
        words = [self.type_hash]
        for _, attr, type_ in self.fields:
            value = getattr(msg, attr)
            if type_ == "uint256":
                words.append(value.to_bytes(32, "big"))
            elif type_ == "bytes32":
                words.append(value)
            elif type_ == "address":
                words.append(bytes(12) + bytes.fromhex(value[2:]))
            else:  # string
                words.append(keccak(text=value))
        domain = domain_separator(msg.chain_id, market_address.lower())
        return keccak(b"\x19\x01" + domain + keccak(b"".join(words)))

    def sign(self, account: LocalAccount, unsigned: M, market_address: str) -> M:
        """``unsigned`` (whose sender is ``account``) with its signature filled in."""
        signed = account.unsafe_sign_hash(Hash32(self.digest(unsigned, market_address)))
        return dataclasses.replace(unsigned, signature=bytes(signed.signature))  # type: ignore[type-var]

    def check_binding(self, msg: Any, expected: Mapping[str, int]) -> None:
        """Refuse a message whose fields (``chain_id``, ``task_id``, …) differ from ``expected``:
        :class:`SignatureError` "… replay refused", naming them as chain, task, …"""
        got = {attr: getattr(msg, attr) for attr in expected}
        if got != dict(expected):

            def describe(values: Mapping[str, int]) -> str:
                return " ".join(f"{a.removesuffix('_id')} {v}" for a, v in values.items())

            raise SignatureError(
                f"{self.label} is for {describe(got)}, expected {describe(expected)}: "
                "replay refused"
            )

    def recover_sender(self, msg: Any, market_address: str) -> str:
        """The ``sender`` of a message whose signature recovers to it, under this market;
        :class:`SignatureError` if unsigned, malformed, forged or altered."""
        if len(msg.signature) != 65:
            raise SignatureError(f"{self.label} from {msg.sender} is not signed")
        digest = self.digest(msg, market_address)
        sig = msg.signature
        try:
            v = sig[64] - 27 if sig[64] >= 27 else sig[64]  # 27/28 (as signed) or 0/1
            signature = Signature(
                vrs=(v, int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"))
            )
            public = signature.recover_public_key_from_msg_hash(digest)
            signer = checksum_address("0x" + public.to_canonical_address().hex())
        except Exception:  # eth-keys raises several types for a malformed signature
            raise SignatureError(
                f"{self.label} from {msg.sender}: signature is malformed"
            ) from None
        if signer != msg.sender:
            raise SignatureError(
                f"{self.label} claims sender {msg.sender} but was signed by {signer}: forged or "
                "altered"
            )
        return str(msg.sender)


#: The fields every message about one trainer's update of one round starts with, in this order
#: (EIP-712 name, attribute, type): the announcement and the batch leaf both sign them.
class UpdateRef(Protocol):
    """What a signed reference to a trainer's update says (an :class:`Announcement`, or a
    batch leaf): whose update of which round of which task, and where (CID, sha256)."""

    @property
    def chain_id(self) -> int: ...
    @property
    def task_id(self) -> int: ...
    @property
    def round(self) -> int: ...
    @property
    def cid(self) -> str: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def sender(self) -> str: ...


UPDATE_REF_FIELDS = (
    ("chainId", "chain_id", "uint256"),
    ("taskId", "task_id", "uint256"),
    ("round", "round", "uint256"),
    ("cid", "cid", "string"),
    ("digest", "digest", "bytes32"),
    ("sender", "sender", "address"),
)

ANNOUNCEMENT_TYPE = SignedMessageType(
    primary_type="Announcement",
    fields=(*UPDATE_REF_FIELDS, ("nonce", "nonce", "uint256")),
    label="announcement",
    max_bytes=MAX_ANNOUNCEMENT_BYTES,
)


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
        ANNOUNCEMENT_TYPE.validate(self)

    def typed_data(self, market_address: str) -> dict[str, Any]:
        """The EIP-712 structure that is signed (``full_message`` for ``encode_typed_data``)."""
        return ANNOUNCEMENT_TYPE.typed_data(self, market_address)

    def to_json(self) -> bytes:
        """The wire form: compact JSON, bytes as 0x-hex."""
        return ANNOUNCEMENT_TYPE.to_json(self)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Announcement:
        """Parse the wire form (does not verify); :class:`SignatureError` if oversize/malformed."""
        return cls(**ANNOUNCEMENT_TYPE.parse_json(raw))


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
    return ANNOUNCEMENT_TYPE.sign(account, unsigned, market_address)


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
    ANNOUNCEMENT_TYPE.check_binding(
        ann, {"chain_id": expected_chain_id, "task_id": expected_task_id, "round": expected_round}
    )
    return ANNOUNCEMENT_TYPE.recover_sender(ann, market_address)


# --- snapshot announcements (gossip averaging) -----------------------------------------------
SNAPSHOT_ANNOUNCEMENT_TYPE = SignedMessageType(
    primary_type="SnapshotAnnouncement",  # not "Announcement": never verifies as an update's
    fields=(
        ("chainId", "chain_id", "uint256"),
        ("taskId", "task_id", "uint256"),
        ("version", "version", "uint256"),
        ("cid", "cid", "string"),
        ("digest", "digest", "bytes32"),
        ("sender", "sender", "address"),
        ("numSamples", "num_samples", "uint256"),
        ("nonce", "nonce", "uint256"),
    ),
    label="snapshot announcement",
    max_bytes=MAX_SNAPSHOT_ANNOUNCEMENT_BYTES,
)


@dataclass(frozen=True)
class SnapshotAnnouncement:
    """ "My model at ``version`` is under ``cid`` (sha256 ``digest`` of the envelope)"."""

    chain_id: int
    task_id: int
    version: int
    cid: str
    digest: bytes
    sender: str
    num_samples: int
    nonce: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        SNAPSHOT_ANNOUNCEMENT_TYPE.validate(self)
        if self.num_samples < 1:
            raise SignatureError("malformed snapshot announcement: numSamples must be positive")

    def typed_data(self, market_address: str) -> dict[str, Any]:
        """The EIP-712 structure that is signed (domain as for update announcements)."""
        return SNAPSHOT_ANNOUNCEMENT_TYPE.typed_data(self, market_address)

    def to_json(self) -> bytes:
        """The wire form: compact JSON, bytes as 0x-hex."""
        return SNAPSHOT_ANNOUNCEMENT_TYPE.to_json(self)

    @classmethod
    def from_json(cls, raw: bytes | str) -> SnapshotAnnouncement:
        """Parse the wire form (does not verify); :class:`SignatureError` if malformed."""
        return cls(**SNAPSHOT_ANNOUNCEMENT_TYPE.parse_json(raw))


def sign_snapshot_announcement(
    account: LocalAccount,
    *,
    chain_id: int,
    task_id: int,
    version: int,
    cid: str,
    digest: bytes,
    num_samples: int,
    market_address: str,
    nonce: int | None = None,
) -> SnapshotAnnouncement:
    """Sign a snapshot announcement as ``account`` (a random 64-bit nonce unless given)."""
    unsigned = SnapshotAnnouncement(
        chain_id=chain_id, task_id=task_id, version=version, cid=cid, digest=digest,
        sender=str(account.address), num_samples=num_samples,
        nonce=secrets.randbits(64) if nonce is None else nonce,
    )  # fmt: skip
    return SNAPSHOT_ANNOUNCEMENT_TYPE.sign(account, unsigned, market_address)


def verify_snapshot_announcement(
    ann: SnapshotAnnouncement, *, expected_chain_id: int, expected_task_id: int, market_address: str
) -> str:
    """The checksummed sender of a correctly signed announcement for this chain and task;
    :class:`SignatureError` otherwise (replayed, forged, altered or unsigned)."""
    SNAPSHOT_ANNOUNCEMENT_TYPE.check_binding(
        ann, {"chain_id": expected_chain_id, "task_id": expected_task_id}
    )
    return SNAPSHOT_ANNOUNCEMENT_TYPE.recover_sender(ann, market_address)
