"""The trainer's side of a task: join, train each round, publish, commit, aggregate, claim.

:meth:`TrainerNode.step` looks at the chain and does the one next thing this trainer owes the task,
so it is safe to call again after a crash: every action checks the chain first (the update already
committed, the model already posted, the leaf already claimed) and the journal keeps what was
chosen (a committed CID is never replaced by a fresh encryption of the same update).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, ClassVar

from marketplace.chain.clients import Outcome, Phase
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.errors import ConfigError, PrivacyBudgetError
from marketplace.fl.attacks import Behaviour, RoundContext
from marketplace.fl.data import Dataset
from marketplace.fl.dp_rounds import train_private
from marketplace.fl.seeding import derive_seed
from marketplace.fl.serialization import dump_weights
from marketplace.fl.train import train_local
from marketplace.fl.weights import Weights
from marketplace.protocol.committee import settle_cancelled
from marketplace.protocol.published_report import claim_args, final_report
from marketplace.protocol.session import TaskSession
from marketplace.storage.pubsub import PubsubClient
from marketplace.units import format_amount
from node.peers.base import Peer, Step
from node.peers.journal import Journal
from node.peers.trainer_batch import BatchDuty
from node.peers.trainer_privacy import TrainerPrivacy
from node.peers.trainer_secagg import SecAggDuty

log = logging.getLogger(__name__)

FAILED_OUTCOMES = (Outcome.FAILED, Outcome.VALIDATION_MISMATCH)  # the budget is the fallback pool
# The nice value of the thread training a round ahead of its batch (Linux: per thread).
AHEAD_NICENESS = 10


@dataclass(frozen=True)
class Ahead:
    """A round's update trained ahead of its batch: the digest of the model it started from
    (as :meth:`TaskSession.model_digest` serializes it: bit for bit), and where the sealed
    update was published."""

    model_digest: bytes
    cid: str
    digest: bytes


class TrainerNode(Peer):
    """One trainer taking part in one task."""

    role: ClassVar[str] = "trainer"

    def __init__(
        self,
        session: TaskSession,
        data: Dataset,
        journal: Journal,
        *,
        behaviour: Behaviour | None = None,
        num_threads: int = 1,
        seed: int = 0,
        announce: Callable[[int, str, bytes], None] | None = None,
        post_grace: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_epsilon: float | None = None,
        pubsub: PubsubClient | None = None,
        send_leaf: Callable[[UpdateLeaf], None] | None = None,
        censor: Collection[str] = (),
    ):
        super().__init__(session, journal)
        self.behaviour = behaviour or Behaviour()
        if self.behaviour.name == "copier":
            # A copier resubmits another trainer's update of the same round; a node only sees
            # those once they are committed, so this evaluation behaviour lives in the simulator.
            raise ConfigError(
                "--behaviour copier runs only in the simulator (`fedmarket demo`): a node cannot "
                "copy an update it has not seen; choose another behaviour"
            )
        # Data-side behaviours (label_flip) poison what this node trains on, as in the simulator.
        x, y = self.behaviour.poison_data(
            data.x, data.y, num_classes=session.doc.model.num_classes,
            seed=derive_seed(seed, "poison", session.identity.address),
        )  # fmt: skip
        if x is not data.x or y is not data.y:
            classes = max(data.num_classes, session.doc.model.num_classes)
            data = dataclasses.replace(data, x=x, y=y, num_classes=classes)
        self.data = data
        # The task's DP mode, if any: this trainer's accountant, kept in the journal.
        self.privacy = (
            TrainerPrivacy(session, journal, len(data), max_epsilon)
            if session.doc.privacy is not None
            else None
        )
        self.num_threads = num_threads
        self.seed = seed
        self.announce = announce
        self.post_grace = post_grace
        self._clock = clock
        # chore -> (local clock, chain time) when we first saw it due (see _my_turn)
        self._first_noticed: dict[tuple[object, ...], tuple[float, int]] = {}
        self._model_checked: set[int] = set()
        # Rounds trained ahead of their batch (see train_ahead), and how those guesses fared.
        self._ahead: dict[int, Future[Ahead | None]] = {}
        self._ahead_pool: ThreadPoolExecutor | None = None
        self.ahead_counts: Counter[str] = Counter()
        self.claimed: dict[str, int] | None = None
        # The task's secure aggregation, if any: its rounds over Kubo pubsub (`pubsub`).
        self.secagg = SecAggDuty(self, pubsub) if session.doc.secagg is not None else None
        # The task's batched round commitments, if on: leaves over gossip, one elected closer.
        terms = session.doc.batches
        self.batch = (
            BatchDuty(self, terms, send_leaf=send_leaf, censor=censor, clock=clock)
            if terms is not None
            else None
        )

    # --- the state machine ----------------------------------------------------------------
    def step(self) -> Step:
        s = self.session
        info = s.info()
        phase = info.phase_enum
        tid = s.task_id
        if phase == Phase.FORMING:
            return Step.waiting("waiting for the committee to accept its seats")
        if phase == Phase.OPEN:
            if not s.market.is_trainer(tid, self.me):
                s.market.join(self.account, tid)
                return Step.acted("joined")
            full = info.trainer_count >= info.max_trainers
            join_over = full or s.market.now() > info.join_deadline
            if join_over and self._my_turn(("start",), 0) and self.try_advance():
                return Step.acted("advanced to training")
            return Step.waiting("waiting for the task to start")
        if phase == Phase.CANCELLED:
            return self._after_cancel()
        if self.secagg is not None and (owed := self.secagg.step(info)) is not None:
            return owed  # a secure-aggregation round (node/peers/trainer_secagg.py)
        if phase == Phase.TRAINING:
            r = info.current_round
            if self.batch is not None and (owed := self.batch.step(info)) is not None:
                return owed  # a batched round (node/peers/trainer_batch.py)
            digest, _ = s.market.update_of(tid, r, self.me)
            batched = self.batch is not None and self.batch.included(r)
            if (
                digest == bytes(32)
                and not batched
                and not (self.privacy and self.privacy.refused(r))
            ):
                return self._train_and_commit(r)
            # Everyone committed: the last committer closes (see _train_and_commit), the others
            # only as a backstop. Deadline passed: the trainer in the round's seat closes.
            all_in = info.round_commits >= info.trainer_count
            seat = None if all_in else r
            round_over = all_in or s.market.now() > info.phase_deadline
            if round_over and self._my_turn(("close", r), seat) and self.try_advance():
                return Step.acted(f"closed round {r}")
            if r > 1 and (posted := self._check_or_post_model(r)):
                return Step.acted(posted)
            return Step.waiting(f"waiting for round {r} to close")
        # Training is over: make sure the final model is on-chain, then wait to claim.
        final_round = info.rounds + 1
        if posted := self._check_or_post_model(final_round):
            return Step.acted(posted)
        if phase == Phase.FINALIZED and s.market.now() >= info.claims_open_at:
            return self._claim()
        if phase == Phase.CLOSED:
            return Step.done("task closed")
        return Step.waiting(f"waiting ({phase.name.lower()})")

    # --- steps ----------------------------------------------------------------------------
    def train_round(
        self, r: int, start: Weights | None = None
    ) -> tuple[Weights, dict[str, Any] | None] | Step:
        """Train round ``r`` from its global model (or ``start``, a guess of it): this trainer's
        update (as its behaviour crafts it) and what the round spent of the DP budget (``None``:
        no DP), or the step refusing the round (budget spent; the refusal is journaled)."""
        s = self.session
        global_weights = s.global_weights(r) if start is None else start
        trained, dp = None, None  # dp: what the round spent, journaled with the update
        if self.behaviour.trains:
            config = s.doc.train
            config = type(config)(**{**config.__dict__,
                                     "seed": derive_seed(self.seed, "train", self.me, r),
                                     "num_threads": self.num_threads})  # fmt: skip
            if self.privacy is not None:
                accountant = self.privacy.accountant(r)
                try:
                    private = train_private(
                        s.doc.model, global_weights, self.data, config, accountant
                    )
                except PrivacyBudgetError as exc:
                    self.privacy.refuse(r, str(exc))
                    return Step.acted(f"refused to train round {r}: {exc}")
                trained, dp = private.local.delta, self.privacy.record(private, accountant)
            else:
                trained = train_local(s.doc.model, global_weights, self.data, config).delta
        ctx = RoundContext(
            r, self.me, global_weights, {}, derive_seed(self.seed, "attack", self.me, r)
        )
        return self.behaviour.craft_update(trained, ctx), dp

    def published_update(self, r: int) -> dict[str, Any] | Step:
        """This trainer's published update of round ``r`` as journalled (``cid``, ``digest``
        hex, ``n`` samples, DP spend), trained and published first if it is not yet; or the
        step refusing the round."""
        s = self.session
        recorded = self.journal.get(s.task_id, r, "published")
        if recorded is None and (ahead := self._take_ahead(r)) is not None:
            entry = {"cid": ahead.cid, "digest": ahead.digest.hex(), "n": len(self.data)}
            recorded = self.journal.record_once(s.task_id, r, "published", entry)
        if recorded is None:
            trained = self.train_round(r)
            if isinstance(trained, Step):
                return trained
            delta, dp = trained
            cid, digest = s.publish_update(r, delta)
            entry = {"cid": cid, "digest": digest.hex(), "n": len(self.data)}
            recorded = self.journal.record_once(
                s.task_id, r, "published", entry if dp is None else {**entry, "dp": dp}
            )
        return recorded

    # --- training ahead (batched rounds) --------------------------------------------------
    def train_ahead(self, r: int, leaves: Sequence[UpdateLeaf]) -> None:
        """Round ``r - 1``'s leaves are all in and its batch is on its way: train round ``r`` now,
        in the background, from the model those leaves give, and publish the update, so that
        when the batch lands only its check is left on the round's critical path
        (:meth:`published_update` uses the result only if that model is, bit for bit, the one
        the recorded batch gives; training is deterministic given the model). Not under a DP
        budget (a guess must not spend it)."""
        if self.privacy is not None or r in self._ahead:
            return
        if self._ahead_pool is None:
            self._ahead_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ahead")
        self._ahead = {k: v for k, v in self._ahead.items() if k >= r - 1}
        self._ahead[r] = self._ahead_pool.submit(self._train_ahead, r, tuple(leaves))

    def _train_ahead(self, r: int, leaves: tuple[UpdateLeaf, ...]) -> Ahead | None:
        with suppress(OSError):  # a guess yields the CPU to the batch it waits for (the closer's)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), AHEAD_NICENESS)
        try:
            model = self.session.speculative_model(r, leaves)
            if model is None:
                return None
            trained = self.train_round(r, start=model)
            if isinstance(trained, Step):
                return None
            cid, digest = self.session.publish_update(r, trained[0])
            return Ahead(hashlib.sha256(dump_weights(model)).digest(), cid, digest)
        except Exception as exc:  # a guess: failing it only means training when the batch lands
            log.info("round %d: training ahead failed (%s); training when the batch lands", r, exc)
            return None

    def _take_ahead(self, r: int) -> Ahead | None:
        """Round ``r``'s update trained ahead, if its starting model is round ``r``'s global
        model (waits for it to finish: sooner than training again)."""
        future = self._ahead.pop(r, None)
        ahead = future.result() if future is not None else None
        if ahead is None:
            return None
        if ahead.model_digest == self.session.model_digest(r):
            self.ahead_counts["used"] += 1
            return ahead
        self.ahead_counts["missed"] += 1
        log.info("round %d: the batch differs from the leaves trained ahead on; training again", r)
        return None

    def close(self) -> None:
        """Stop background work (a guess still training is dropped)."""
        if self._ahead_pool is not None:
            self._ahead_pool.shutdown(wait=False, cancel_futures=True)

    def _train_and_commit(self, r: int) -> Step:
        s = self.session
        tid = s.task_id
        if r > 1:
            self._check_or_post_model(r)
        recorded = self.published_update(r)
        if isinstance(recorded, Step):
            return recorded
        cid, digest = recorded["cid"], bytes.fromhex(recorded["digest"])
        if self.announce and self.batch is None:  # in the background, before the commit: peers
            self.announce(r, cid, digest)  # get it while it mines (a batched round announced it)
        s.market.commit_update(self.account, tid, r, cid, digest, int(recorded["n"]))
        self.journal.record(tid, r, "committed", recorded)
        # The last committer closes the round at once: it is the first to know, and waiting for
        # the closer's next poll would put a poll interval on every round's critical path.
        info = s.info()
        booked = recorded.get("dp")
        spent = (
            f" (DP ε +{booked['epsilon_round']:.3f} = {booked['epsilon_total']:.3f} of "
            f"{self.privacy.budget:g})"
            if self.privacy is not None and booked
            else ""
        )
        if info.round_commits >= info.trainer_count and self.try_advance():
            return Step.acted(f"committed round {r}{spent} and closed it", detail=cid)
        return Step.acted(f"committed round {r}{spent}", detail=cid)

    def _has_seat(self, seat: int) -> bool:
        trainers = self.session.members().trainers
        return bool(trainers) and trainers[seat % len(trainers)].lower() == self.me.lower()

    def _my_turn(self, chore: tuple[object, ...], seat: int | None) -> bool:
        """Whether to do a task-wide chore (start training, close a round, post a model) now.

        Any trainer may do these and the result is the same, but each redundant transaction costs
        gas (a lost race reverts, and still pays). So the trainers, sorted by address, take turns:
        the one in ``seat`` (if any) acts at once; the others only when the chore is still undone
        ``post_grace`` seconds after they first noticed it (the elected one crashed or stalled),
        by either the local or the chain clock (a devnet's time jumps while the local one stands
        still).
        """
        if seat is not None and self._has_seat(seat):
            return True
        now, now_chain = self._clock(), self.session.market.now()
        seen_at, seen_chain = self._first_noticed.setdefault(chore, (now, now_chain))
        return now - seen_at >= self.post_grace or now_chain - seen_chain >= self.post_grace

    def _check_or_post_model(self, r: int) -> str | None:
        """Post round ``r``'s model if it is our turn (or the poster is late), or check the posted
        one against ours and report a mismatch as evidence. Returns what was done, if anything."""
        s = self.session
        if r in self._model_checked:
            return None
        onchain = s.market.model_digest(s.task_id, r)
        if onchain == bytes(32):
            if self._my_turn(("post", r), r - 2):
                self._post_model(r)
                self._model_checked.add(r)
                return f"posted the model of round {r}"
            return None
        if onchain != s.model_digest(r) and not self.journal.has(s.task_id, r, "mismatch"):
            log.error(
                "MODEL MISMATCH in round %d of task %d: the model posted on-chain (%s…) differs "
                "from the one this node computed (%s…); reporting evidence and following the "
                "on-chain model if it can be fetched",
                r, s.task_id, onchain.hex()[:12], s.model_digest(r).hex()[:12],
            )  # fmt: skip
            self._post_model(r)  # the contract keeps the first post and emits the mismatch
            self.journal.record(s.task_id, r, "mismatch", {"posted": onchain.hex()})
            followed = s.follow_posted_model(r)
            self._model_checked.add(r)
            return (
                f"MODEL MISMATCH in round {r}: reported; "
                + ("now following the on-chain model" if followed else "kept ours (posted model "
                   "unreadable)")
            )  # fmt: skip
        self._model_checked.add(r)
        return None

    def _post_model(self, r: int) -> None:
        s = self.session
        cid, digest = s.publish_model(r)
        # A second post of the same digest is a no-op; a different one is recorded as evidence.
        s.market.post_model(self.account, s.task_id, r, cid, digest)

    def _claim(self) -> Step:
        s = self.session
        found = claim_args(final_report(s), self.me, s.leaf_domain)
        if found is None:
            return Step.done("not in the payout table")
        entry, proof = found
        claimed_now = self.claim_leaf(entry, proof)
        self.claimed = {"amount": entry.amount, "flags": entry.flags}
        if not claimed_now:
            # A flagged entry is settled by any oracle (that slashes the stake); losing that
            # race to an oracle, or to our own earlier run, leaves nothing to do.
            return Step.done("already claimed")
        self.journal.record(s.task_id, 0, "claimed", {"amount": str(entry.amount)})
        return Step.done(f"claimed {format_amount(entry.amount)} tokens")

    def _after_cancel(self) -> Step:
        s = self.session
        if s.market.is_trainer(s.task_id, self.me) and not self.journal.has(s.task_id, 0, "bond"):
            if self.batch is not None and int(s.info().outcome) in FAILED_OUTCOMES:
                # Batched rounds count for the fallback pay only once proven, leaf by leaf.
                self.batch.prove_samples()
            settle_cancelled(s.market, self.account, s.task_id)
            self.journal.record(s.task_id, 0, "bond", {})
        return Step.done("task cancelled")
