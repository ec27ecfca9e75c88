"""TaskMarket's batched round commitments, from Python: commit a round's batch, challenge a
forged leaf, prove one's batched samples, and read who joined in which order and which batches
were committed.

Built over :class:`~marketplace.chain.clients.Marketplace` (its ``send``/``call``/``events``),
kept apart so the core client stays small. The off-chain half (leaves, tree, checks, election)
is :mod:`marketplace.protocol.round_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from marketplace.chain.clients import Marketplace
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.protocol.round_batch import Batch


@dataclass(frozen=True)
class RecordedBatch:
    """A ``RoundCommitted`` event: what the chain holds of one round's batch."""

    task_id: int
    round: int
    closer: str
    root: bytes
    included: tuple[int, ...]
    count: int
    samples: int
    leaves_cid: str
    block: int


class BatchCommits:
    """Batched round commitments of one marketplace deployment."""

    def __init__(self, market: Marketplace) -> None:
        self.market = market

    def commit_round(
        self,
        closer: LocalAccount,
        batch: Batch,
        *,
        leaves_cid: str,
        model_digest: bytes = b"\x00" * 32,
        model_cid: str = "",
    ) -> TxReceipt:
        """Send ``batch`` as round ``batch.round``'s commitment (and the model that starts it)."""
        fn = self.market.market.functions.commitRound(
            batch.task_id,
            batch.round,
            batch.root,
            list(batch.included),
            batch.samples,
            leaves_cid,
            model_digest,
            model_cid,
        )
        return self.market.send(fn, closer)

    def challenge_leaf(
        self,
        challenger: LocalAccount,
        recorded: RecordedBatch,
        leaf: UpdateLeaf,
        proof: Sequence[bytes],
    ) -> TxReceipt:
        """Prove ``leaf`` (in ``recorded``'s tree) forged: the closer is slashed."""
        fn = self.market.market.functions.challengeLeaf(
            recorded.task_id,
            recorded.round,
            recorded.closer,
            recorded.root,
            leaf.contract_args(),
            leaf.signature,
            list(proof),
        )
        return self.market.send(fn, challenger)

    def prove_samples(
        self,
        trainer: LocalAccount,
        recorded: RecordedBatch,
        leaf: UpdateLeaf,
        proof: Sequence[bytes],
    ) -> TxReceipt:
        """Credit ``trainer``'s own ``leaf`` of ``recorded`` to its samples on record (the
        weight of its fallback pay); one transaction per batched round."""
        fn = self.market.market.functions.proveSamples(
            recorded.task_id,
            recorded.round,
            recorded.closer,
            recorded.root,
            leaf.contract_args(),
            leaf.signature,
            list(proof),
        )
        return self.market.send(fn, trainer)

    def join_order(self, task_id: int) -> list[str]:
        """The task's trainers in join order (a trainer's position is its bit in a bitmap)."""
        return self.market.joined_trainers(task_id)

    def batches(self, task_id: int) -> dict[int, RecordedBatch]:
        """The task's committed batches by round."""
        logs = self.market.events(self.market.market, "RoundCommitted", filters={"taskId": task_id})
        out: dict[int, RecordedBatch] = {}
        for e in logs:
            a = e["args"]
            out[int(a["round"])] = RecordedBatch(
                task_id=task_id,
                round=int(a["round"]),
                closer=str(a["closer"]),
                root=bytes(a["root"]),
                included=tuple(int(w) for w in a["included"]),
                count=int(a["count"]),
                samples=int(a["samples"]),
                leaves_cid=str(a["leavesCid"]),
                block=int(e["blockNumber"]),
            )
        return out
