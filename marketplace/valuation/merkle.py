"""Merkle tree of the payout table, compatible with OpenZeppelin's ``StandardMerkleTree``.

Same algorithm as ``@openzeppelin/merkle-tree`` 1.0.8 (``dist/core.js``, ``merkletree.js``,
``hashes.js``), so its roots and proofs verify with OpenZeppelin's ``MerkleProof`` on-chain:

* leaf hash = ``keccak256(keccak256(abi.encode(types, values)))`` (double hashing: a leaf can never
  be mistaken for a 64-byte inner node);
* inner node = ``keccak256(sorted(a, b))`` (the pair sorted as 256-bit integers);
* leaves sorted by hash, ascending (``sortLeaves`` default), stored in an array of ``2n - 1``
  nodes with leaf ``i`` (in sorted order) at ``len - 1 - i``, children of node ``i`` at
  ``2i + 1`` and ``2i + 2``, root at 0;
* a proof is the list of siblings from the leaf up to (not including) the root.

The payout leaves are ``(uint256 chainId, address market, uint256 taskId, uint256 index,
address account, uint256 amount, uint32 scorePpm, uint256 flags)``, as ``PayoutLeaf.hash`` in
``contracts/libraries/PayoutLeaf.sol``: the first three values, a :class:`LeafDomain`, bind every
leaf to one task of one TaskMarket on one chain, so a leaf and its proof claim nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from marketplace.errors import ValuationError
from marketplace.valuation.payouts import PayoutEntry, normalize_account

PAYOUT_LEAF_TYPES: tuple[str, ...] = (
    "uint256", "address", "uint256",  # the domain: chainId, market, taskId
    "uint256", "address", "uint256", "uint32", "uint256",  # index, account, amount, scorePpm, flags
)  # fmt: skip


@dataclass(frozen=True)
class LeafDomain:
    """Where a payout tree's leaves can be claimed: one task of one TaskMarket on one chain.

    ``market`` is the TaskMarket that holds the payout root (ModelMarket re-verifies the same
    leaves with the TaskMarket address it reads them from).
    """

    chain_id: int
    market: str
    task_id: int

    def __post_init__(self) -> None:
        for name in ("chain_id", "task_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
                raise ValuationError(f"leaf domain {name} must be a uint256, got {value!r}")
        object.__setattr__(self, "market", normalize_account(self.market))

    def leaf(self, entry: PayoutEntry) -> tuple[int, str, int, int, str, int, int, int]:
        """``entry``'s leaf values in this domain, in the order of :data:`PAYOUT_LEAF_TYPES`."""
        return (self.chain_id, self.market, self.task_id, *entry.claim_values())

    def as_dict(self) -> dict[str, Any]:
        """``{"chain_id", "market", "task_id"}``: how a report names its task."""
        return {"chain_id": self.chain_id, "market": self.market, "task_id": self.task_id}


SIMULATION_DOMAIN = LeafDomain(chain_id=0, market="0x" + "00" * 20, task_id=0)
"""The leaf domain of a simulated task: no chain, no market (nothing is ever claimed)."""


def leaf_hash(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """``keccak256(keccak256(abi.encode(types, values)))``."""
    try:
        encoded = encode(list(types), list(values))
    except Exception as exc:  # eth_abi raises several types for a bad value
        raise ValuationError(
            f"leaf {list(values)} does not encode as {list(types)}: {exc}"
        ) from None
    return bytes(keccak(keccak(encoded)))


def node_hash(a: bytes, b: bytes) -> bytes:
    """``keccak256`` of the two children, smaller first."""
    return bytes(keccak(a + b if a <= b else b + a))  # big-endian bytes compare as integers


def process_proof(leaf: bytes, proof: Sequence[bytes | str]) -> bytes:
    """The root a leaf hash and its proof lead to."""
    node = leaf
    for sibling in proof:
        node = node_hash(node, _to_bytes(sibling))
    return node


def verify(
    root: bytes | str, types: Sequence[str], values: Sequence[Any], proof: Sequence[bytes | str]
) -> bool:
    """Whether ``values`` with ``proof`` lead to ``root`` (as ``MerkleProof.verify`` on-chain)."""
    return process_proof(leaf_hash(types, values), proof) == _to_bytes(root)


def _to_bytes(node: bytes | str) -> bytes:
    if isinstance(node, bytes):
        return node
    return bytes.fromhex(node.removeprefix("0x"))


def _hex(node: bytes) -> str:
    return "0x" + node.hex()


class StandardMerkleTree:
    """A tree over ``values`` (each a sequence matching ``types``), as OpenZeppelin builds it."""

    def __init__(self, values: Sequence[Sequence[Any]], types: Sequence[str]) -> None:
        if not values:
            raise ValuationError("a Merkle tree needs at least one leaf")
        self.types = tuple(types)
        self.values = tuple(tuple(v) for v in values)
        hashed = sorted((leaf_hash(self.types, v), i) for i, v in enumerate(self.values))
        size = 2 * len(hashed) - 1
        tree: list[bytes] = [b""] * size
        tree_index = [0] * len(hashed)
        for position, (h, value_index) in enumerate(hashed):
            tree[size - 1 - position] = h
            tree_index[value_index] = size - 1 - position
        for i in range(size - 1 - len(hashed), -1, -1):
            tree[i] = node_hash(tree[2 * i + 1], tree[2 * i + 2])
        self.tree = tuple(tree)
        self.tree_index = tuple(tree_index)

    @property
    def root(self) -> str:
        """The root as ``0x``-prefixed hex."""
        return _hex(self.tree[0])

    def proof_at(self, value_index: int) -> list[str]:
        """The proof of ``values[value_index]``, siblings leaf to root, as hex strings."""
        if not 0 <= value_index < len(self.values):
            raise ValuationError(f"no leaf at position {value_index} (tree has {len(self.values)})")
        i = self.tree_index[value_index]
        proof = []
        while i > 0:
            sibling = i - 1 if i % 2 == 0 else i + 1
            proof.append(_hex(self.tree[sibling]))
            i = (i - 1) // 2
        return proof

    def dump(self) -> dict[str, Any]:
        """The tree in OpenZeppelin's ``standard-v1`` dump format (numbers as decimal strings)."""
        return {
            "format": "standard-v1",
            "leafEncoding": list(self.types),
            "tree": [_hex(h) for h in self.tree],
            "values": [
                {"value": [str(x) if isinstance(x, int) else x for x in v], "treeIndex": t}
                for v, t in zip(self.values, self.tree_index, strict=True)
            ],
        }


class PayoutTree(StandardMerkleTree):
    """The payout table's tree: one leaf per trainer, ``domain.leaf(entry)``
    (``chainId, market, taskId, index, account, amount, scorePpm, flags``).

    Build with :meth:`build`; ``proof(index)`` takes the entry's ``index`` (the claim's index).
    """

    def __init__(self, entries: Sequence[PayoutEntry], domain: LeafDomain) -> None:
        indexes = [e.index for e in entries]
        if len(set(indexes)) != len(indexes):
            raise ValuationError(f"payout entries repeat an index: {sorted(indexes)}")
        self.entries = tuple(entries)
        self.domain = domain
        self._position = {e.index: p for p, e in enumerate(entries)}
        super().__init__([domain.leaf(e) for e in entries], PAYOUT_LEAF_TYPES)

    @classmethod
    def build(cls, entries: Sequence[PayoutEntry], domain: LeafDomain) -> PayoutTree:
        """The tree over ``entries`` (e.g. ``PayoutTable.entries``) for the task ``domain``."""
        return cls(entries, domain)

    def proof(self, index: int) -> list[str]:
        """The proof for the entry whose ``index`` field is ``index``."""
        if index not in self._position:
            raise ValuationError(f"no payout entry with index {index}")
        return self.proof_at(self._position[index])
