"""Batched round commitments, off-chain: the leaf set, its Merkle tree and bitmap, its checks,
and who closes a round.

A round's batch is built by its *closer* from the trainers' signed
:class:`~marketplace.crypto.update_leaf.UpdateLeaf` s gathered over gossip: the tree is
OpenZeppelin's StandardMerkleTree over the leaves' EIP-712 digests (leaf type ``bytes32``),
the bitmap has bit ``i`` set for the trainer that joined ``i``-th. ``TaskMarket.commitRound``
stores the root and bitmap; a left-out trainer commits directly.

Nothing here trusts the closer: :func:`check_leaves` keeps a leaf only if its signature recovers
to its sender for this chain, market, task and round and the sender is a member of the task, so
a forged or foreign leaf never enters aggregation or valuation; :func:`check_batch` compares a
published leaf set with what the chain recorded and lists the forged leaves as evidence for
``challengeLeaf``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from marketplace.crypto.update_leaf import UpdateLeaf, leaf_digest, verify_update_leaf
from marketplace.errors import BatchError, ConfigError, SignatureError
from marketplace.jsonlimits import shallow_json
from marketplace.units import checksum_address
from marketplace.valuation.merkle import StandardMerkleTree

#: Leaf type of the batch tree: each value is one leaf's EIP-712 digest.
BATCH_LEAF_TYPES: tuple[str, ...] = ("bytes32",)
#: Largest published leaf set accepted (bytes): ~400 bytes a leaf, 4096 leaves.
MAX_LEAF_SET_BYTES = 2_000_000
#: Default length of one closer's turn (seconds): see :class:`BatchTerms`.
DEFAULT_TURN_SECONDS = 20.0


@dataclass(frozen=True)
class BatchTerms:
    """A task's batched-commitment term (the task document's ``batches``; absent: off).

    Each round's trainers sign leaves and one elected closer commits them in one transaction.
    ``turn_seconds`` is one closer's turn, counted by each trainer from when its own leaf of the
    round was ready: the turn-0 closer waits at most half a turn for missing leaves, the next
    closer takes over after a turn, and a trainer with no batch after :data:`FALLBACK_TURNS`
    turns commits directly (so do left-out trainers once the batch is on-chain)."""

    turn_seconds: float = DEFAULT_TURN_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.turn_seconds <= 3600:
            raise ConfigError(
                f"batch turn of {self.turn_seconds}s: give 0 < turn_seconds <= 3600 in the task's "
                "batches term (--batch-turn)"
            )

    def to_dict(self) -> dict[str, object]:
        return {"turn_seconds": self.turn_seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BatchTerms:
        turn = data.get("turn_seconds", DEFAULT_TURN_SECONDS)
        if isinstance(turn, bool) or not isinstance(turn, int | float):
            raise ConfigError(f"batches.turn_seconds must be a number, got {turn!r}")
        return cls(turn_seconds=float(turn))


#: Turns after which a trainer still waiting for a batch commits directly.
FALLBACK_TURNS = 3


@dataclass(frozen=True)
class Batch:
    """A round's batch as its closer commits it."""

    task_id: int
    round: int
    leaves: tuple[UpdateLeaf, ...]  # sorted by sender
    root: bytes
    included: tuple[int, ...]  # bitmap words, bit i = the trainer that joined i-th
    samples: int
    tree: StandardMerkleTree = field(repr=False, compare=False)

    def proof(self, sender: str) -> list[bytes]:
        """The Merkle proof of ``sender``'s leaf."""
        want = checksum_address(sender)
        for position, leaf in enumerate(self.leaves):
            if leaf.sender == want:
                return [bytes.fromhex(h[2:]) for h in self.tree.proof_at(position)]
        raise BatchError(f"{want} has no leaf in round {self.round}'s batch")

    def senders(self) -> set[str]:
        """The included trainers."""
        return {leaf.sender for leaf in self.leaves}


def bitmap(indices: Iterable[int], trainer_count: int) -> tuple[int, ...]:
    """The bitmap words (one per 256 trainers) with the bits of ``indices`` set."""
    words = [0] * ((trainer_count + 255) // 256)
    for i in indices:
        if not 0 <= i < trainer_count:
            raise BatchError(f"join index {i} outside 0..{trainer_count - 1}")
        words[i // 256] |= 1 << (i % 256)
    return tuple(words)


def bitmap_members(words: Sequence[int], join_order: Sequence[str]) -> set[str]:
    """The trainers whose bits are set, given the trainers in join order."""
    return {
        a
        for i, a in enumerate(join_order)
        if i // 256 < len(words) and words[i // 256] >> (i % 256) & 1
    }


def build_batch(
    leaves: Iterable[UpdateLeaf], *, join_order: Sequence[str], market_address: str
) -> Batch:
    """The batch over ``leaves`` (already checked with :func:`check_leaves`; one per sender)."""
    ordered = tuple(sorted(leaves, key=lambda leaf: leaf.sender.lower()))
    if not ordered:
        raise BatchError("a batch needs at least one leaf")
    senders = [leaf.sender for leaf in ordered]
    if len(set(senders)) != len(senders):
        raise BatchError("a batch has one leaf per trainer")
    index: dict[str, int] = {checksum_address(a): i for i, a in enumerate(join_order)}
    missing = [s for s in senders if s not in index]
    if missing:
        raise BatchError(f"leaf senders {missing} have not joined the task")
    first = ordered[0]
    if any((leaf.task_id, leaf.round) != (first.task_id, first.round) for leaf in ordered):
        raise BatchError("a batch's leaves are for one task and round")
    tree = StandardMerkleTree(
        [(leaf_digest(leaf, market_address),) for leaf in ordered], BATCH_LEAF_TYPES
    )
    return Batch(
        task_id=first.task_id,
        round=first.round,
        leaves=ordered,
        root=bytes.fromhex(tree.root[2:]),
        included=bitmap((index[s] for s in senders), len(join_order)),
        samples=sum(leaf.num_samples for leaf in ordered),
        tree=tree,
    )


@dataclass(frozen=True)
class LeafCheck:
    """Leaves that may be used, and the others with why not."""

    valid: tuple[UpdateLeaf, ...]
    rejected: tuple[tuple[UpdateLeaf, str], ...]


def check_leaves(
    leaves: Iterable[UpdateLeaf],
    *,
    members: Iterable[str],
    chain_id: int,
    task_id: int,
    round_: int,
    market_address: str,
) -> LeafCheck:
    """Keep each leaf signed by its sender for this chain, market, task and round whose sender
    is a member; the first valid leaf of a sender wins, a second different one is rejected."""
    allowed = {checksum_address(m) for m in members}
    valid: dict[str, UpdateLeaf] = {}
    rejected: list[tuple[UpdateLeaf, str]] = []
    for leaf in leaves:
        try:
            sender = verify_update_leaf(
                leaf,
                expected_chain_id=chain_id,
                expected_task_id=task_id,
                expected_round=round_,
                market_address=market_address,
            )
        except SignatureError as exc:
            rejected.append((leaf, str(exc)))
            continue
        if sender not in allowed:
            rejected.append((leaf, f"{sender} is not a trainer of task {task_id}"))
        elif sender in valid and valid[sender] != leaf:
            rejected.append((leaf, f"{sender} signed a second leaf for round {round_}"))
        else:
            valid[sender] = leaf
    return LeafCheck(valid=tuple(valid.values()), rejected=tuple(rejected))


@dataclass(frozen=True)
class BatchCheck:
    """A published leaf set against the batch recorded on-chain."""

    usable: tuple[UpdateLeaf, ...]  # genuine leaves whose bit is set
    forged: tuple[UpdateLeaf, ...]  # in the tree but not signed by a member: challenge evidence
    root_matches: bool  # the leaf set rebuilds the recorded root
    bits_match: bool  # the set bits are exactly the leaves' senders
    samples_match: bool  # the recorded total is the leaves' sum


def check_batch(
    leaves: Sequence[UpdateLeaf],
    *,
    root: bytes,
    included: Sequence[int],
    samples: int,
    join_order: Sequence[str],
    chain_id: int,
    task_id: int,
    round_: int,
    market_address: str,
) -> BatchCheck:
    """Check a published leaf set (all leaves of the tree, as the closer committed them)."""
    checked = check_leaves(
        leaves,
        members=join_order,
        chain_id=chain_id,
        task_id=task_id,
        round_=round_,
        market_address=market_address,
    )
    try:
        values = [(leaf_digest(leaf, market_address),) for leaf in leaves]
        rebuilt = bytes.fromhex(StandardMerkleTree(values, BATCH_LEAF_TYPES).root[2:])
    except Exception:  # an empty set
        rebuilt = b""
    in_bitmap = bitmap_members(included, join_order)
    senders = {leaf.sender for leaf in leaves}
    return BatchCheck(
        usable=tuple(leaf for leaf in checked.valid if leaf.sender in in_bitmap),
        forged=tuple(leaf for leaf, _ in checked.rejected),
        root_matches=rebuilt == bytes(root),
        bits_match=senders == in_bitmap,
        samples_match=sum(leaf.num_samples for leaf in leaves) == samples,
    )


def closer_for(round_: int, trainers: Iterable[str], *, elapsed: float, turn_seconds: float) -> str:
    """Who closes ``round_`` ``elapsed`` seconds after the first leaf could be batched: the
    trainers sorted by address, rotated by round; each turn lasts ``turn_seconds``, after
    which the next one in that order may close."""
    order = sorted({checksum_address(t) for t in trainers}, key=str.lower)
    if not order:
        raise BatchError("no trainers to elect a closer from")
    turns = int(max(elapsed, 0.0) // turn_seconds) if turn_seconds > 0 else 0
    return order[(round_ - 1 + turns) % len(order)]


def leaf_set_json(leaves: Iterable[UpdateLeaf]) -> bytes:
    """The published leaf set: a JSON list of leaves' wire forms."""
    return json.dumps(
        [shallow_json(leaf.to_json()) for leaf in leaves], separators=(",", ":")
    ).encode()


def parse_leaf_set(raw: bytes) -> list[UpdateLeaf]:
    """The leaves of a published leaf set; :class:`BatchError` if oversize or malformed."""
    if len(raw) > MAX_LEAF_SET_BYTES:
        raise BatchError(f"leaf set of {len(raw)} bytes exceeds {MAX_LEAF_SET_BYTES}: dropped")
    try:
        items = shallow_json(raw)  # a peer's: nesting bounded (2 deep)
        if not isinstance(items, list):
            raise ValueError("not a list")
        return [UpdateLeaf.from_json(json.dumps(item)) for item in items]
    except (ValueError, UnicodeDecodeError, SignatureError) as exc:
        raise BatchError(f"malformed leaf set: {exc}") from None


def join_index(join_order: Sequence[str]) -> Mapping[str, int]:
    """Each trainer's bit in the bitmap (its position in join order)."""
    return {checksum_address(a): i for i, a in enumerate(join_order)}
