"""A trainer's signed leaf of a round's batch: "my update for this round is (CID, digest, samples)".

The typed data is ``UpdateLeaf{chainId, taskId, round, cid, digest, sender, numSamples}`` under
the same EIP-712 domain as the gossip :class:`~marketplace.crypto.announce.Announcement`
(``{name: "FedMarket", version: "1", chainId, verifyingContract: <TaskMarket>}``), so a leaf is
bound to one chain, market, task and round. It is a type of its own rather than the
announcement because the leaf must also sign the sample count (the weight of fallback pay) and
needs no nonce: a trainer signs at most one leaf per round, and the contract
(``contracts/libraries/RoundBatch.sol``) recomputes exactly this digest when a leaf is
challenged or proven. :func:`leaf_digest` is that digest: the value the batch's Merkle tree
commits to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from marketplace.crypto.announce import UPDATE_REF_FIELDS, SignedMessageType
from marketplace.errors import SignatureError

MAX_LEAF_BYTES = 2048

UPDATE_LEAF_TYPE = SignedMessageType(
    primary_type="UpdateLeaf",
    fields=(*UPDATE_REF_FIELDS, ("numSamples", "num_samples", "uint256")),
    label="update leaf",
    max_bytes=MAX_LEAF_BYTES,
)


@dataclass(frozen=True)
class UpdateLeaf:
    """A (possibly unsigned) leaf: ``sender``'s update of ``round`` (sha256 ``digest`` of the
    bytes under ``cid``) trained on ``num_samples`` samples."""

    chain_id: int
    task_id: int
    round: int
    cid: str
    digest: bytes
    sender: str
    num_samples: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        UPDATE_LEAF_TYPE.validate(self)
        if not 0 < self.num_samples < 2**64:
            raise SignatureError("malformed update leaf: numSamples must be in 1..2^64-1")
        if not 0 < self.round < 2**16:
            raise SignatureError("malformed update leaf: round must be in 1..65535")

    @property
    def cid_hash(self) -> bytes:
        """keccak256 of the CID string (how EIP-712 and the contract encode it)."""
        return keccak(text=self.cid)

    def typed_data(self, market_address: str) -> dict[str, Any]:
        """The EIP-712 structure that is signed."""
        return UPDATE_LEAF_TYPE.typed_data(self, market_address)

    def to_json(self) -> bytes:
        """The wire form: compact JSON, bytes as 0x-hex."""
        return UPDATE_LEAF_TYPE.to_json(self)

    @classmethod
    def from_json(cls, raw: bytes | str) -> UpdateLeaf:
        """Parse the wire form (does not verify); :class:`SignatureError` if oversize/malformed."""
        return cls(**UPDATE_LEAF_TYPE.parse_json(raw))

    def contract_args(self) -> tuple[str, bytes, bytes, int]:
        """The leaf as the contract's ``UpdateLeaf`` struct ``(trainer, digest, cidHash,
        numSamples)``."""
        return (self.sender, self.digest, self.cid_hash, self.num_samples)


def sign_update_leaf(
    account: LocalAccount,
    *,
    chain_id: int,
    task_id: int,
    round: int,
    cid: str,
    digest: bytes,
    num_samples: int,
    market_address: str,
) -> UpdateLeaf:
    """Sign ``account``'s leaf for ``round``."""
    unsigned = UpdateLeaf(
        chain_id=chain_id, task_id=task_id, round=round, cid=cid, digest=digest,
        sender=str(account.address), num_samples=num_samples,
    )  # fmt: skip
    return UPDATE_LEAF_TYPE.sign(account, unsigned, market_address)


def verify_update_leaf(
    leaf: UpdateLeaf,
    *,
    expected_chain_id: int,
    expected_task_id: int,
    expected_round: int,
    market_address: str,
) -> str:
    """The checksummed sender of a leaf signed by it for this chain, task and round;
    :class:`SignatureError` otherwise (replayed, forged, altered or unsigned)."""
    UPDATE_LEAF_TYPE.check_binding(
        leaf,
        {"chain_id": expected_chain_id, "task_id": expected_task_id, "round": expected_round},
    )
    return _signer(leaf, market_address)


# A round's leaves are checked by gossip on arrival, again by the closer, and again by every
# peer against the recorded batch: each is the same pure function of the leaf (signature
# included) and the market, so it is computed once. A forged leaf raises and is not cached.
@lru_cache(maxsize=4096)
def _signer(leaf: UpdateLeaf, market_address: str) -> str:
    return UPDATE_LEAF_TYPE.recover_sender(leaf, market_address)


@lru_cache(maxsize=4096)
def leaf_digest(leaf: UpdateLeaf, market_address: str) -> bytes:
    """The leaf's EIP-712 digest (``keccak256("\\x19\\x01" ‖ domain ‖ struct)``), as
    ``RoundBatch.leafDigest`` computes it: the value the batch's Merkle tree commits to."""
    return UPDATE_LEAF_TYPE.digest(leaf, market_address)
