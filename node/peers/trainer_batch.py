"""A trainer's round under batched round commitments: sign and gossip its leaf, wait for the
batch (or close it, when elected), and commit directly when left out.

Each round (the task's ``batches`` term on):

1. train and publish the update (as always), sign its
   :class:`~marketplace.crypto.update_leaf.UpdateLeaf` (journalled: the same leaf after a
   restart) and gossip it, carrying the update when it is small (else with the update's
   announcement), repeating the leaf every
   :data:`RESEND_FIRST_SECONDS`, doubling to :data:`RESEND_MAX_SECONDS`, until the batch is
   on-chain (a peer whose subscription formed late, or whose daemon dropped it, still gets it);
2. the round's closer (:func:`~marketplace.protocol.round_batch.closer_for`: trainers by
   address, rotated by round, one turn of ``turn_seconds`` each from the first leaf this peer
   saw) sends the batch once it holds every trainer's leaf, or half a turn in, or at once when
   its turn came because an earlier closer failed (:func:`~marketplace.protocol.round_closer.
   close_round`: every leaf checked, the leaf set published, one ``commitRound`` that also posts
   the round's model and ends the round when everyone is in);
3. a trainer whose bit is not set in the recorded batch, or that sees direct commits and no
   batch, or no batch after :data:`~marketplace.protocol.round_batch.FALLBACK_TURNS` turns,
   commits directly (``commitUpdate``) in the window the contract keeps open — so its pay never
   depends on the closer's honesty.

Every decision is journalled (``leaf``, ``batched``, ``left-out``, ``closed``) and every action
reads the chain first, so a restarted node neither sends twice nor loses its round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from marketplace.chain.batch_client import BatchCommits, RecordedBatch
from marketplace.chain.views import TaskInfo
from marketplace.crypto.update_leaf import UpdateLeaf, sign_update_leaf
from marketplace.errors import BatchError, ChainLagError, TransactionRevertedError
from marketplace.protocol.round_batch import FALLBACK_TURNS, BatchTerms, bitmap_members, closer_for
from marketplace.protocol.round_closer import NO_MODEL, close_round, prove_own_leaves
from marketplace.protocol.session import TaskSession
from node.peers.base import Step
from node.peers.journal import Journal
from node.peers.trainer_privacy import TrainerPrivacy

log = logging.getLogger(__name__)


class TrainerHost(Protocol):
    """What the duty uses of its trainer node (:class:`node.peers.trainer.TrainerNode`)."""

    session: TaskSession
    journal: Journal
    privacy: TrainerPrivacy | None
    announce: Callable[[int, str, bytes], None] | None

    @property
    def me(self) -> str: ...

    @property
    def account(self) -> LocalAccount: ...

    def published_update(self, r: int) -> dict[str, Any] | Step: ...

    def train_ahead(self, r: int, leaves: Sequence[UpdateLeaf]) -> None: ...


# A waiting trainer repeats its leaf on the topic after 0.5 s, then 1, 2, 3, 3, … s: pubsub is
# best-effort (Kubo can drop one of two messages a daemon publishes at once, and the leaf follows
# the announcement), and a lost leaf holds up the whole round; a repeat costs a receiver a
# fingerprint lookup (gossip's duplicate check).
RESEND_FIRST_SECONDS = 0.5
RESEND_MAX_SECONDS = 3.0
# The batch cannot be sent (any more): the round goes on with direct commits.
BATCH_REFUSED = (
    "TaskMarketRoundHasDirectCommits",
    "TaskMarketDeadlinePassed",
    "TaskMarketWrongRound",
    "TaskMarketWrongPhase",
)


class BatchDuty:
    """One trainer's part in its task's batched rounds (see the module docstring)."""

    def __init__(
        self,
        node: TrainerHost,
        terms: BatchTerms,
        *,
        send_leaf: Callable[[UpdateLeaf], None] | None = None,
        censor: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.terms = terms
        self.send_leaf = send_leaf
        # For evaluation only: leaves of these trainers are left out when this node closes.
        self.censor = {to_checksum_address(a) for a in censor}
        self.batches = BatchCommits(node.session.market)
        self._clock = clock
        self._settled: set[int] = set()  # rounds decided: in a batch, or committing directly
        self._included: set[int] = set()
        self._first_leaf: dict[int, float] = {}  # round -> local time the first leaf was seen
        self._sent: dict[int, tuple[float, int]] = {}  # round -> (last sent, times sent)
        self._model_put: set[int] = set()  # rounds whose model this closer put ahead

    # --- queries --------------------------------------------------------------------------
    def included(self, round_: int) -> bool:
        """Whether this trainer's update of ``round_`` is in the round's batch."""
        return round_ in self._included

    def join_order(self) -> list[str]:
        """The task's trainers in join order (final once training started; read once)."""
        return self.node.session.join_order()

    def recorded(self, round_: int) -> RecordedBatch | None:
        return self.batches.batches(self.node.session.task_id).get(round_)

    # --- the round ------------------------------------------------------------------------
    def step(self, info: TaskInfo) -> Step | None:
        """What this round's batch asks of the trainer now; ``None`` when the round goes on as
        without batches (included: wait for the round to close; left out: commit directly)."""
        node, s = self.node, self.node.session
        tid, r, me = s.task_id, info.current_round, node.me
        if r in self._settled:
            return None
        recorded = self.recorded(r)
        if recorded is not None:
            return self._settle(r, recorded)
        # A direct commit of ours would count in round_commits (no batch yet): only then read it.
        committed = info.round_commits > 0 and s.market.update_of(tid, r, me)[0] != bytes(32)
        if node.journal.has(tid, r, "left-out") or committed:
            self._settled.add(r)  # decided before a restart, or committed directly already
            return None
        if node.privacy is not None and node.privacy.refused(r):
            return None
        published = node.published_update(r)
        if isinstance(published, Step):
            return published
        leaf = self._own_leaf(r, published)
        held = s.gossiped_leaves.setdefault(r, {})
        held[me] = leaf
        now = self._clock()
        first = self._first_leaf.setdefault(r, now)
        self._send(r, leaf, published, now)
        if info.round_commits > 0:  # direct commits and no batch: no batch can follow
            if not s.direct_commit_logs(r):
                # The count is state the logs do not show yet: a batch or a direct commit in
                # the block being mined. Deciding now could leave out a batched update.
                raise ChainLagError(
                    f"round {r}: {info.round_commits} updates counted but no batch or direct "
                    "commit in the chain's logs yet: retrying"
                )
            return self._leave_out(r, "other trainers committed directly")
        order = self.join_order()
        turn = self.terms.turn_seconds
        if (
            r > 1
            and r not in self._model_put
            and closer_for(r, order, elapsed=0.0, turn_seconds=turn) == me
        ):
            # First in line to close: put the round's model (the batch posts it) while the
            # leaves come in, not between the last leaf and the batch; the view read here is
            # memoized for the close (no block is mined while the leaves come in).
            self._model_put.add(r)
            if s.market.model_digest(s.task_id, r) == bytes(32):
                s.publish_model(r)
        if len(held) >= info.trainer_count and r < info.rounds:
            # Every leaf is in: the batch can only be these (or fewer), so start on the next
            # round now, off the critical path (checked against the batch once it lands).
            node.train_ahead(r + 1, [held[sender] for sender in sorted(held)])
        elapsed = now - first
        if elapsed >= FALLBACK_TURNS * turn:
            return self._leave_out(r, f"no batch after {FALLBACK_TURNS} closers' turns")
        closer = closer_for(r, order, elapsed=elapsed, turn_seconds=turn)
        if closer == me:
            leaves = [leaf for sender, leaf in list(held.items()) if sender not in self.censor]
            if len(held) >= info.trainer_count or elapsed >= turn / 2:
                return self._close(r, leaves, info.trainer_count)
        return Step.waiting(
            f"round {r}: waiting for the batch ({len(held)}/{info.trainer_count} leaves seen)"
        )

    def _settle(self, r: int, recorded: RecordedBatch) -> Step:
        """The batch is on-chain: in it, or committing directly."""
        tid, me = self.node.session.task_id, self.node.me
        self._settled.add(r)
        if me in bitmap_members(recorded.included, self.join_order()):
            self._included.add(r)
            self.node.journal.record_once(
                tid, r, "batched", {"closer": recorded.closer, "root": recorded.root.hex()}
            )
            return Step.acted(f"round {r}: my update is in the batch of {recorded.closer}")
        return self._leave_out(r, f"left out of the batch of {recorded.closer}")

    def _leave_out(self, r: int, why: str) -> Step:
        self._settled.add(r)
        self.node.journal.record_once(self.node.session.task_id, r, "left-out", {"why": why})
        log.warning("round %d: %s; committing directly", r, why)
        return Step.acted(f"round {r}: {why}; committing directly")

    def _own_leaf(self, r: int, published: dict[str, object]) -> UpdateLeaf:
        s = self.node.session
        entry = self.node.journal.get(s.task_id, r, "leaf")
        if entry is not None:
            return UpdateLeaf.from_json(str(entry["json"]))
        leaf = sign_update_leaf(
            self.node.account, chain_id=s.chain_id, task_id=s.task_id, round=r,
            cid=str(published["cid"]), digest=bytes.fromhex(str(published["digest"])),
            num_samples=int(str(published["n"])), market_address=s.market.market.address,
        )  # fmt: skip
        entry = self.node.journal.record_once(
            s.task_id, r, "leaf", {"json": leaf.to_json().decode()}
        )
        return UpdateLeaf.from_json(str(entry["json"]))

    def _send(self, r: int, leaf: UpdateLeaf, published: dict[str, object], now: float) -> None:
        """Gossip the leaf, repeated after :data:`RESEND_FIRST_SECONDS`, doubling up to
        :data:`RESEND_MAX_SECONDS` (``send_leaf`` makes the update reachable too: carried with
        the leaf, or announced); without ``send_leaf``, only announce the update, once."""
        last, times = self._sent.get(r, (None, 0))
        if last is not None:
            interval = min(RESEND_FIRST_SECONDS * 2 ** (times - 1), RESEND_MAX_SECONDS)
            if now - last < interval:
                return
        if self.send_leaf is not None:
            self.send_leaf(leaf)
        elif last is None and self.node.announce is not None:
            self.node.announce(r, str(published["cid"]), bytes.fromhex(str(published["digest"])))
        self._sent[r] = (now, times + 1)

    def _close(self, r: int, leaves: list[UpdateLeaf], trainers: int) -> Step:
        """Send round ``r``'s batch as its closer."""
        s = self.node.session
        model_digest, model_cid = NO_MODEL, ""
        if r > 1 and s.market.model_digest(s.task_id, r) == bytes(32):
            model_cid, model_digest = s.publish_model(r)
        try:
            closed = close_round(
                self.batches, self.node.account, leaves, join_order=self.join_order(),
                task_id=s.task_id, round_=r, publish=s.store.put, model_digest=model_digest,
                model_cid=model_cid,
            )  # fmt: skip
        except TransactionRevertedError as exc:
            if exc.error_name == "TaskMarketRoundAlreadyBatched":
                return Step.acted(f"round {r}: another closer sent the batch first")
            if exc.error_name in BATCH_REFUSED:
                return Step.acted(f"round {r}: batch refused ({exc.error_name})")
            raise
        except BatchError as exc:
            return Step.waiting(f"round {r}: no batch to send yet ({exc})")
        count = len(closed.batch.leaves)
        self.node.journal.record(
            s.task_id, r, "closed",
            {"root": closed.batch.root.hex(), "leaves_cid": closed.leaves_cid, "count": count},
        )  # fmt: skip
        return Step.acted(
            f"closed round {r} with a batch of {count}/{trainers} leaves", detail=closed.leaves_cid
        )

    # --- after a failed task --------------------------------------------------------------
    def prove_samples(self) -> list[int]:
        """Credit this trainer's batched leaves to its samples on record (``proveSamples``),
        each round once (journalled ``proven``): the weight of its fallback pay."""
        node, s = self.node, self.node.session
        own = {
            e.round: UpdateLeaf.from_json(str(e.payload["json"]))
            for e in node.journal.entries(s.task_id)
            if e.step == "leaf"
        }
        return prove_own_leaves(
            self.batches, s.store, node.account, s.task_id, own,
            done=lambda r: node.journal.has(s.task_id, r, "proven"),
            record=lambda r: node.journal.record(s.task_id, r, "proven", {}),
        )  # fmt: skip
